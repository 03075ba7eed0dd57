//! A job's file on one machine: an append-only sequence of frames (its input, each version of
//! its record, its log lines, its output files), so that a job is one inode instead of a
//! folder of five or six, and every change is an append.
//!
//! A frame is a 13-byte header (kind: 1 byte; payload length: u32; the payload's CRC-32; the
//! CRC-32 of those 9 bytes) and the payload. A file is read from its start and read stops at
//! the first frame that is not whole (a power cut before a sync can leave a torn or zeroed
//! tail, never a hole before a synced frame): a frame is used only when every frame before it
//! is whole, so appending a change after what it depends on, in the same file, orders them
//! without a sync in between. Payloads over [`LARGE`] are checked by their header only when
//! the file is opened (their writer syncs them before anything follows, see
//! `jobs::local`) and by their CRC when they are read.

use crate::faas::OutputFile;
use std::io::{self, Read, Seek, SeekFrom};

/// Header bytes before each payload.
pub const HEADER: usize = 13;
/// Payloads larger than this are synced before anything is appended after them.
pub const LARGE: usize = 64 << 10;

/// What a frame holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The job's input, decoded.
    Input = 1,
    /// A version of the record, as JSON: the last whole one is the record.
    Record = 2,
    /// Log lines (`<unix ms> <text>\n`): the log is all of them in order.
    Log = 3,
    /// Every output file of a run ([`encode_outputs`]): the last one replaces the others.
    Outputs = 4,
}

impl Kind {
    fn from_byte(byte: u8) -> Option<Self> {
        match byte {
            1 => Some(Self::Input),
            2 => Some(Self::Record),
            3 => Some(Self::Log),
            4 => Some(Self::Outputs),
            _ => None,
        }
    }
}

/// One frame, ready to append.
pub fn frame(kind: Kind, payload: &[u8]) -> io::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(HEADER + payload.len());
    push_frame(&mut out, kind, payload)?;
    Ok(out)
}

/// Appends one frame to `out`; a payload over 4 GiB (past every job limit) is refused.
pub fn push_frame(out: &mut Vec<u8>, kind: Kind, payload: &[u8]) -> io::Result<()> {
    let len = u32::try_from(payload.len()).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "a job file's frame holds at most 4 GiB",
        )
    })?;
    let mut header = [0u8; HEADER];
    header[0] = kind as u8;
    header[1..5].copy_from_slice(&len.to_le_bytes());
    header[5..9].copy_from_slice(&crc32fast::hash(payload).to_le_bytes());
    let check = crc32fast::hash(&header[..9]);
    header[9..13].copy_from_slice(&check.to_le_bytes());
    out.extend_from_slice(&header);
    out.extend_from_slice(payload);
    Ok(())
}

/// Where a frame is in its file.
#[derive(Debug, Clone, Copy)]
pub struct Place {
    /// Its kind.
    pub kind: Kind,
    /// Offset of its payload.
    pub offset: u64,
    /// Payload length.
    pub len: u32,
    /// The payload's CRC-32.
    crc: u32,
}

/// A file's whole frames.
#[derive(Debug, Default)]
pub struct Scan {
    /// Every whole frame, in order, with the small payloads read.
    pub frames: Vec<(Place, Option<Vec<u8>>)>,
    /// Bytes the whole frames take: anything after is a torn tail.
    pub whole: u64,
    /// The file's length.
    pub len: u64,
}

impl Scan {
    /// The payload of the last frame of `kind` (read from `file` if it is large).
    pub fn last(&self, file: &mut std::fs::File, kind: Kind) -> io::Result<Option<Vec<u8>>> {
        match self.frames.iter().rev().find(|(p, _)| p.kind == kind) {
            Some((place, payload)) => payload_of(file, place, payload.as_ref()).map(Some),
            None => Ok(None),
        }
    }

    /// Every payload of `kind`, in order, joined.
    pub fn joined(&self, file: &mut std::fs::File, kind: Kind) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        for (place, payload) in self.frames.iter().filter(|(p, _)| p.kind == kind) {
            out.extend(payload_of(file, place, payload.as_ref())?);
        }
        Ok(out)
    }

    /// Whether it holds a frame of `kind`.
    pub fn has(&self, kind: Kind) -> bool {
        self.frames.iter().any(|(p, _)| p.kind == kind)
    }
}

/// The payload at `place`, checked against its CRC.
fn payload_of(
    file: &mut std::fs::File,
    place: &Place,
    read: Option<&Vec<u8>>,
) -> io::Result<Vec<u8>> {
    if let Some(bytes) = read {
        return Ok(bytes.clone());
    }
    file.seek(SeekFrom::Start(place.offset))?;
    let mut bytes = vec![0u8; place.len as usize];
    file.read_exact(&mut bytes)?;
    if crc32fast::hash(&bytes) != place.crc {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "a job file's frame does not match its checksum",
        ));
    }
    Ok(bytes)
}

/// Reads `file`'s frames from its start to the first one that is not whole. Allocations are
/// bounded by the file's length (a header's length past the end is a torn frame).
pub fn scan(file: &mut std::fs::File) -> io::Result<Scan> {
    let len = file.metadata()?.len();
    file.seek(SeekFrom::Start(0))?;
    let mut reader = io::BufReader::new(&mut *file);
    let mut scan = Scan {
        len,
        ..Scan::default()
    };
    let mut pos = 0u64;
    loop {
        let mut header = [0u8; HEADER];
        if len - pos < HEADER as u64 {
            break;
        }
        // Only the end of the file is a torn frame; any other read error is the caller's.
        match reader.read_exact(&mut header) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(e),
        }
        let word = |at: usize| {
            u32::from_le_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]])
        };
        let (Some(kind), true) = (
            Kind::from_byte(header[0]),
            crc32fast::hash(&header[..9]) == word(9),
        ) else {
            break;
        };
        let (payload_len, crc) = (word(1), word(5));
        let offset = pos + HEADER as u64;
        if len - offset < u64::from(payload_len) {
            break;
        }
        let payload = if payload_len as usize <= LARGE {
            let mut bytes = vec![0u8; payload_len as usize];
            reader.read_exact(&mut bytes)?;
            if crc32fast::hash(&bytes) != crc {
                break;
            }
            Some(bytes)
        } else {
            reader.seek_relative(i64::from(payload_len))?;
            None
        };
        let place = Place {
            kind,
            offset,
            len: payload_len,
            crc,
        };
        scan.frames.push((place, payload));
        pos = offset + u64::from(payload_len);
    }
    scan.whole = pos;
    Ok(scan)
}

/// Output files as one payload: a count, then each file's path and bytes, length-prefixed.
pub fn encode_outputs(files: &[OutputFile]) -> Vec<u8> {
    let size: usize = files
        .iter()
        .map(|f| 12 + f.path.len() + f.bytes.len())
        .sum();
    let mut out = Vec::with_capacity(4 + size);
    out.extend_from_slice(&u32::try_from(files.len()).unwrap_or(u32::MAX).to_le_bytes());
    for file in files {
        out.extend_from_slice(
            &u32::try_from(file.path.len())
                .unwrap_or(u32::MAX)
                .to_le_bytes(),
        );
        out.extend_from_slice(file.path.as_bytes());
        out.extend_from_slice(&(file.bytes.len() as u64).to_le_bytes());
        out.extend_from_slice(&file.bytes);
    }
    out
}

/// The files of [`encode_outputs`]; every length is checked against what is left first.
pub fn decode_outputs(payload: &[u8]) -> io::Result<Vec<OutputFile>> {
    let mut files = Vec::new();
    walk_outputs(payload, |path, bytes| {
        files.push(OutputFile {
            path: path.to_string(),
            bytes: bytes.to_vec(),
        });
        false
    })?;
    Ok(files)
}

/// One file of [`encode_outputs`] by its path, only its bytes copied.
pub fn find_output(payload: &[u8], wanted: &str) -> io::Result<Option<Vec<u8>>> {
    let mut found = None;
    walk_outputs(payload, |path, bytes| {
        if path == wanted {
            found = Some(bytes.to_vec());
        }
        found.is_some()
    })?;
    Ok(found)
}

/// Calls `visit` with each file of [`encode_outputs`] (path, bytes) until it returns `true`;
/// every length is checked against what is left first.
fn walk_outputs(payload: &[u8], mut visit: impl FnMut(&str, &[u8]) -> bool) -> io::Result<()> {
    let bad = || {
        io::Error::new(
            io::ErrorKind::InvalidData,
            "a job's outputs frame is malformed",
        )
    };
    let mut rest = payload;
    let mut take = |n: usize| -> io::Result<&[u8]> {
        if rest.len() < n {
            return Err(bad());
        }
        let (head, tail) = rest.split_at(n);
        rest = tail;
        Ok(head)
    };
    let count = u32::from_le_bytes(take(4)?.try_into().map_err(|_| bad())?);
    for _ in 0..count {
        let path_len = u32::from_le_bytes(take(4)?.try_into().map_err(|_| bad())?) as usize;
        let path = std::str::from_utf8(take(path_len)?).map_err(|_| bad())?;
        let len = u64::from_le_bytes(take(8)?.try_into().map_err(|_| bad())?);
        let bytes = take(usize::try_from(len).map_err(|_| bad())?)?;
        if visit(path, bytes) {
            break;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file_with(bytes: &[u8]) -> (tempfile::TempDir, std::fs::File) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("job");
        std::fs::write(&path, bytes).unwrap();
        let file = std::fs::OpenOptions::new().read(true).open(&path).unwrap();
        (dir, file)
    }

    #[test]
    fn frames_read_back_in_order_large_ones_from_the_file() {
        let big = vec![7u8; LARGE + 1];
        let mut bytes = frame(Kind::Input, &big).unwrap();
        push_frame(&mut bytes, Kind::Record, b"{\"v\":1}").unwrap();
        push_frame(&mut bytes, Kind::Log, b"1 a\n").unwrap();
        push_frame(&mut bytes, Kind::Record, b"{\"v\":2}").unwrap();
        push_frame(&mut bytes, Kind::Log, b"2 b\n").unwrap();
        let (_dir, mut file) = file_with(&bytes);
        let scan = scan(&mut file).unwrap();
        assert_eq!(scan.whole, bytes.len() as u64);
        assert_eq!(
            scan.last(&mut file, Kind::Record).unwrap().unwrap(),
            b"{\"v\":2}"
        );
        assert_eq!(scan.joined(&mut file, Kind::Log).unwrap(), b"1 a\n2 b\n");
        assert_eq!(scan.last(&mut file, Kind::Input).unwrap().unwrap(), big);
        assert!(scan.last(&mut file, Kind::Outputs).unwrap().is_none());
    }

    #[test]
    fn reading_stops_at_a_torn_or_zeroed_frame_and_nothing_after_it_counts() {
        let mut good = frame(Kind::Record, b"first").unwrap();
        let whole = good.len() as u64;
        // A torn frame: its header promises more than is there.
        let mut torn = good.clone();
        torn.extend_from_slice(&frame(Kind::Record, b"second").unwrap()[..HEADER + 2]);
        let (_d1, mut f1) = file_with(&torn);
        let s = scan(&mut f1).unwrap();
        assert_eq!((s.whole, s.len), (whole, torn.len() as u64));
        // Zeros where a frame should be (an unwritten block), then a whole frame: not used.
        let mut holed = good.clone();
        holed.extend_from_slice(&[0u8; 40]);
        holed.extend_from_slice(&frame(Kind::Record, b"after the hole").unwrap());
        let (_d2, mut f2) = file_with(&holed);
        let s = scan(&mut f2).unwrap();
        assert_eq!(s.whole, whole);
        assert_eq!(s.last(&mut f2, Kind::Record).unwrap().unwrap(), b"first");
        // A payload whose bytes changed: its CRC fails.
        good.extend_from_slice(&frame(Kind::Log, b"line").unwrap());
        let last = good.len() - 1;
        good[last] ^= 1;
        let (_d3, mut f3) = file_with(&good);
        assert_eq!(scan(&mut f3).unwrap().whole, whole);
    }

    #[test]
    fn a_large_payload_damaged_on_disk_is_refused_when_read() {
        let big = vec![1u8; LARGE + 10];
        let mut bytes = frame(Kind::Outputs, &big).unwrap();
        let at = HEADER + 5;
        bytes[at] = 2;
        let (dir, mut file) = file_with(&bytes);
        let scan = scan(&mut file).unwrap();
        assert!(scan.has(Kind::Outputs));
        assert!(scan.last(&mut file, Kind::Outputs).is_err());
        drop(dir);
    }

    #[test]
    fn outputs_round_trip_and_malformed_ones_are_refused() {
        let files = vec![
            OutputFile {
                path: "a.txt".into(),
                bytes: b"A".to_vec(),
            },
            OutputFile {
                path: "dir/b.bin".into(),
                bytes: vec![0, 1, 2],
            },
        ];
        let payload = encode_outputs(&files);
        assert_eq!(decode_outputs(&payload).unwrap(), files);
        assert_eq!(
            find_output(&payload, "dir/b.bin").unwrap(),
            Some(vec![0, 1, 2])
        );
        assert_eq!(find_output(&payload, "dir").unwrap(), None);
        assert!(decode_outputs(&payload[..payload.len() - 1]).is_err());
        assert!(find_output(&payload[..payload.len() - 1], "nope").is_err());
        // A count or length far past the payload allocates nothing.
        let mut lying = u32::MAX.to_le_bytes().to_vec();
        lying.extend_from_slice(&9u32.to_le_bytes());
        assert!(decode_outputs(&lying).is_err());
        let mut out = Vec::new();
        out.write_all(&encode_outputs(&[])).unwrap();
        assert_eq!(decode_outputs(&out).unwrap(), vec![]);
    }
}
