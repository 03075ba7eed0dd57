//! Job folders of earlier versions (`jobs/<service>/<job>/` holding `record.jsonl` or
//! `job.json`, `input`, `log.txt` and `outputs/`), turned into job files ([`super::frames`])
//! at start-up, once: the new file is written beside the folder as `.<job>.migrating` and
//! synced; the folder is renamed aside to `.<job>.old`, the file into its place, and only then
//! is the old folder removed. Every step is a rename, so a crash leaves the folder or the
//! synced file whole, which the next start carries on from ([`finish_interrupted`]).

use super::frames::{self, Kind};
use super::record::JobRecord;
use crate::faas::OutputFile;
use std::io;
use std::path::{Path, PathBuf};

/// The record's file: one JSON line per change.
const RECORD: &str = "record.jsonl";
/// The record's file in the oldest layout (replaced atomically on each change).
const OLD_RECORD: &str = "job.json";
/// Suffix of a migration's file until it takes the folder's place.
const MIGRATING: &str = ".migrating";
/// Suffix of a migrated folder until it is removed.
const OLD: &str = ".old";

/// What became of a job folder.
pub enum Migrated {
    /// Its job file is in place.
    Done,
    /// It held no complete record (a job never acknowledged): removed, for this reason.
    Incomplete(String),
    /// It could not be read (permissions, an I/O error): left as it is.
    Unreadable(io::Error),
}

/// `job_path`'s sibling `.<job><suffix>`.
fn beside(job_path: &Path, suffix: &str) -> PathBuf {
    let name = job_path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    job_path.with_file_name(format!(".{name}{suffix}"))
}

/// The job a migration's leftover (its file, or its folder set aside) belongs to, if `name`
/// is one.
pub fn leftover_of(name: &str) -> Option<&str> {
    let name = name.strip_prefix('.')?;
    name.strip_suffix(MIGRATING)
        .or_else(|| name.strip_suffix(OLD))
}

/// Carries on a migration a crash interrupted, from what it left of `job`: a folder not yet
/// set aside keeps its place (the file goes, the folder is migrated again); a file synced
/// before its folder was set aside takes the folder's place; a folder set aside goes once the
/// file is in place, and comes back if the file never got there.
pub fn finish_interrupted(service_dir: &Path, job: &str) -> io::Result<()> {
    let job_path = service_dir.join(job);
    let (migrating, old) = (beside(&job_path, MIGRATING), beside(&job_path, OLD));
    if migrating.exists() {
        if job_path.exists() {
            std::fs::remove_file(&migrating)?;
        } else {
            std::fs::rename(&migrating, &job_path)?;
        }
    }
    if old.exists() {
        if job_path.exists() {
            crate::fsutil::remove_tree(&old)?;
        } else {
            std::fs::rename(&old, &job_path)?;
        }
    }
    crate::fsutil::sync_dir(service_dir)
}

/// Turns the folder at `job_path` into a job file.
pub fn migrate(job_path: &Path) -> Migrated {
    let record = match read_record(job_path) {
        Found::Record(record) => record,
        Found::Incomplete(reason) => {
            let _ = std::fs::remove_dir_all(job_path);
            return Migrated::Incomplete(reason);
        }
        Found::Unreadable(e) => return Migrated::Unreadable(e),
    };
    if !input_is_whole(job_path, &record) {
        let _ = std::fs::remove_dir_all(job_path);
        return Migrated::Incomplete("its input is not whole".into());
    }
    match write_file(job_path, &record) {
        Ok(()) => Migrated::Done,
        Err(e) => Migrated::Unreadable(e),
    }
}

fn write_file(job_path: &Path, record: &JobRecord) -> io::Result<()> {
    let mut bytes = Vec::new();
    match std::fs::read(job_path.join("input")) {
        Ok(input) => frames::push_frame(&mut bytes, Kind::Input, &input)?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    match std::fs::read(job_path.join("log.txt")) {
        Ok(log) => frames::push_frame(&mut bytes, Kind::Log, &log)?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let outputs = job_path.join("outputs");
    if outputs.is_dir() {
        frames::push_frame(
            &mut bytes,
            Kind::Outputs,
            &frames::encode_outputs(&read_outputs(&outputs)?),
        )?;
    }
    let json = serde_json::to_vec(record).map_err(io::Error::other)?;
    frames::push_frame(&mut bytes, Kind::Record, &json)?;
    let (migrating, old) = (beside(job_path, MIGRATING), beside(job_path, OLD));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let written = options.open(&migrating).and_then(|file| {
        io::Write::write_all(&mut &file, &bytes)?;
        file.sync_all()
    });
    if let Err(e) = written.and_then(|()| std::fs::rename(job_path, &old)) {
        // The folder is untouched: it stays the job's.
        let _ = std::fs::remove_file(&migrating);
        return Err(e);
    }
    if let Err(e) = std::fs::rename(&migrating, job_path) {
        // Both are whole; the folder goes back (or the next start sorts them out).
        let _ = std::fs::rename(&old, job_path);
        return Err(e);
    }
    let dir = job_path.parent().unwrap_or(Path::new("."));
    crate::fsutil::sync_dir(dir)?;
    crate::fsutil::remove_tree(&old)
}

/// The output files of a folder this server wrote, sorted by path.
fn read_outputs(dir: &Path) -> io::Result<Vec<OutputFile>> {
    let limits = crate::faas::outputs::OutputLimits {
        max_files: usize::MAX,
        max_bytes: u64::MAX,
    };
    let mut files = crate::faas::outputs::collect(dir, limits)
        .map_err(io::Error::other)?
        .files;
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(files)
}

/// What a job folder's record files say.
enum Found {
    Record(Box<JobRecord>),
    Incomplete(String),
    Unreadable(io::Error),
}

/// The last complete line of the record file, or the oldest layout's file when the record
/// file has none.
fn read_record(job_dir: &Path) -> Found {
    let bytes = match std::fs::read(job_dir.join(RECORD)) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Found::Unreadable(e),
    };
    let whole = bytes
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(0, |end| end + 1);
    if let Some(record) = bytes[..whole]
        .split(|b| *b == b'\n')
        .rev()
        .find_map(|line| serde_json::from_slice(line).ok())
    {
        return Found::Record(Box::new(record));
    }
    match std::fs::read(job_dir.join(OLD_RECORD)) {
        Ok(old) => match serde_json::from_slice(&old) {
            Ok(record) => Found::Record(Box::new(record)),
            Err(e) => Found::Incomplete(format!("{OLD_RECORD} does not parse: {e}")),
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            Found::Incomplete(format!("no complete line in {RECORD}"))
        }
        Err(e) => Found::Unreadable(e),
    }
}

/// Whether an unfinished job's input is whole: a power cut before the sync that would have
/// acknowledged the job can leave a record whose input is short.
fn input_is_whole(job_dir: &Path, record: &JobRecord) -> bool {
    if record.status.is_finished()
        || record.origin != super::record::Origin::Job
        || record.trigger.is_some()
    {
        return true;
    }
    let len = std::fs::metadata(job_dir.join("input")).map_or(0, |m| m.len());
    len == record.bytes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::record::Status;

    fn record(name: &str, status: Status, bytes: u64) -> JobRecord {
        JobRecord::for_tests(name, status, bytes)
    }

    fn line(record: &JobRecord) -> Vec<u8> {
        let mut line = serde_json::to_vec(record).unwrap();
        line.push(b'\n');
        line
    }

    fn read_back(path: &Path) -> (JobRecord, Option<Vec<u8>>, Vec<u8>, Vec<OutputFile>) {
        let mut file = std::fs::File::open(path).unwrap();
        let scan = frames::scan(&mut file).unwrap();
        let record =
            serde_json::from_slice(&scan.last(&mut file, Kind::Record).unwrap().unwrap()).unwrap();
        let input = scan.last(&mut file, Kind::Input).unwrap();
        let log = scan.joined(&mut file, Kind::Log).unwrap();
        let outputs = scan
            .last(&mut file, Kind::Outputs)
            .unwrap()
            .map(|p| frames::decode_outputs(&p).unwrap())
            .unwrap_or_default();
        (record, input, log, outputs)
    }

    #[test]
    fn a_folder_becomes_a_file_with_its_record_input_log_and_outputs() {
        let tmp = tempfile::tempdir().unwrap();
        let job = tmp.path().join("svc-1");
        std::fs::create_dir_all(job.join("outputs/sub")).unwrap();
        let mut done = record("svc-1", Status::Running, 2);
        let mut lines = line(&done);
        done.status = Status::Succeeded;
        lines.extend(line(&done));
        // A torn last line (a power cut) is ignored.
        lines.extend_from_slice(br#"{"name":"svc-1","st"#);
        std::fs::write(job.join(RECORD), lines).unwrap();
        std::fs::write(job.join("input"), b"in").unwrap();
        std::fs::write(job.join("log.txt"), b"1 a\n2 b\n").unwrap();
        std::fs::write(job.join("outputs/sub/o.txt"), b"out").unwrap();
        assert!(matches!(migrate(&job), Migrated::Done));
        assert!(job.is_file());
        let (r, input, log, outputs) = read_back(&job);
        assert_eq!(r, done);
        assert_eq!(input.as_deref(), Some(&b"in"[..]));
        assert_eq!(log, b"1 a\n2 b\n");
        assert_eq!(outputs[0].path, "sub/o.txt");
    }

    #[test]
    fn the_oldest_layout_and_incomplete_folders() {
        let tmp = tempfile::tempdir().unwrap();
        let old = tmp.path().join("svc-old");
        std::fs::create_dir_all(&old).unwrap();
        let record_old = record("svc-old", Status::Pending, 0);
        crate::fsutil::write_json(&old.join(OLD_RECORD), &record_old).unwrap();
        std::fs::write(old.join(RECORD), br#"{"name":"svc-old","#).unwrap();
        std::fs::write(old.join("input"), b"").unwrap();
        assert!(matches!(migrate(&old), Migrated::Done));
        assert_eq!(read_back(&old).0, record_old);
        // A record whose input is short was never acknowledged: the folder goes.
        let short = tmp.path().join("svc-short");
        std::fs::create_dir_all(&short).unwrap();
        std::fs::write(
            short.join(RECORD),
            line(&record("svc-short", Status::Pending, 5)),
        )
        .unwrap();
        std::fs::write(short.join("input"), b"12").unwrap();
        assert!(matches!(migrate(&short), Migrated::Incomplete(_)));
        assert!(!short.exists());
    }

    #[test]
    fn an_interrupted_migration_is_finished_or_started_again() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        // The folder set aside, the synced file not yet in place: it takes the place, and the
        // old folder goes.
        std::fs::write(dir.join(".svc-a.migrating"), b"file").unwrap();
        std::fs::create_dir(dir.join(".svc-a.old")).unwrap();
        assert_eq!(leftover_of(".svc-a.migrating"), Some("svc-a"));
        assert_eq!(leftover_of(".svc-a.old"), Some("svc-a"));
        finish_interrupted(dir, "svc-a").unwrap();
        assert_eq!(std::fs::read(dir.join("svc-a")).unwrap(), b"file");
        assert!(!dir.join(".svc-a.old").exists());
        // The folder still in its place: the file goes, the folder is migrated again.
        std::fs::create_dir(dir.join("svc-b")).unwrap();
        std::fs::write(dir.join(".svc-b.migrating"), b"file").unwrap();
        finish_interrupted(dir, "svc-b").unwrap();
        assert!(!dir.join(".svc-b.migrating").exists());
        assert!(dir.join("svc-b").is_dir());
        // The file in place, the old folder not yet removed: it goes.
        std::fs::write(dir.join("svc-c"), b"file").unwrap();
        std::fs::create_dir_all(dir.join(".svc-c.old/outputs")).unwrap();
        finish_interrupted(dir, "svc-c").unwrap();
        assert!(!dir.join(".svc-c.old").exists());
        assert_eq!(std::fs::read(dir.join("svc-c")).unwrap(), b"file");
        // Set aside with no file made: the folder comes back.
        std::fs::create_dir(dir.join(".svc-d.old")).unwrap();
        finish_interrupted(dir, "svc-d").unwrap();
        assert!(dir.join("svc-d").is_dir());
        assert_eq!(leftover_of("svc-e"), None);
    }
}
