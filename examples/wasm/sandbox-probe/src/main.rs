//! A diagnostic module that shows what a module can and cannot reach. Its input is a list of
//! commands, one a line; it prints one result line per command:
//!
//! - `read PATH`: read a file; `list PATH`: list a folder; `write PATH TEXT`: write a file;
//! - `env`: print the environment; `print TEXT`, `stderr TEXT`: print;
//! - `sleep MS`; `exit CODE`; `panic`; `output NAME TEXT`: write an output file.
//!
//! - `remove PATH`: remove a file; `symlink TARGET NAME`: make a symbolic link NAME in the
//!   output folder;
//! - `fill PATH MIB`: write MIB mebibytes to a file (0: without end); `files N`: create N
//!   output files; `spam N`: print N bytes.
//!
//! Paths may use `$IN` and `$OUT` for the input and output folders, `$INPUT` for the input file.

use std::io::Write;

fn main() {
    oscar_guest::run(|input| {
        let script = input.read_to_string()?;
        let in_dir = std::env::var("TMP_INPUT_DIR").unwrap_or_default();
        let out_dir = std::env::var("TMP_OUTPUT_DIR").unwrap_or_default();
        let input_file = std::env::var("INPUT_FILE_PATH").unwrap_or_default();
        for line in script.lines() {
            let line = line
                .replace("$INPUT", &input_file)
                .replace("$IN", &in_dir)
                .replace("$OUT", &out_dir);
            let (cmd, arg) = line.split_once(' ').unwrap_or((line.as_str(), ""));
            match cmd {
                "read" => match std::fs::read(arg) {
                    Ok(b) => println!("read {arg}: ok {} bytes", b.len()),
                    Err(e) => println!("read {arg}: denied ({e})"),
                },
                "list" => match std::fs::read_dir(arg) {
                    Ok(entries) => {
                        let mut names: Vec<String> = entries
                            .filter_map(|e| e.ok())
                            .map(|e| e.file_name().to_string_lossy().into_owned())
                            .collect();
                        names.sort();
                        println!("list {arg}: ok [{}]", names.join(","));
                    }
                    Err(e) => println!("list {arg}: denied ({e})"),
                },
                "write" => {
                    let (path, text) = arg.split_once(' ').unwrap_or((arg, ""));
                    match std::fs::write(path, text) {
                        Ok(()) => println!("write {path}: ok"),
                        Err(e) => println!("write {path}: denied ({e})"),
                    }
                }
                "output" => {
                    let (name, text) = arg.split_once(' ').unwrap_or((arg, ""));
                    oscar_guest::write_output(name, text)?;
                }
                "remove" => match std::fs::remove_file(arg) {
                    Ok(()) => println!("remove {arg}: ok"),
                    Err(e) => println!("remove {arg}: denied ({e})"),
                },
                "symlink" => {
                    let (target, link) = arg.split_once(' ').unwrap_or((arg, ""));
                    match symlink_in_output(target, link) {
                        Ok(()) => println!("symlink {link}: ok"),
                        Err(e) => println!("symlink {link}: denied ({e})"),
                    }
                }
                "fill" => {
                    let (path, mib) = arg.split_once(' ').unwrap_or((arg, "0"));
                    let mib: u64 = mib.parse().unwrap_or(0);
                    let mut file = std::fs::File::create(path)?;
                    let chunk = vec![b'x'; 1 << 20];
                    let mut written = 0;
                    while mib == 0 || written < mib {
                        file.write_all(&chunk)?;
                        written += 1;
                    }
                    println!("fill {path}: ok {written} MiB");
                }
                "files" => {
                    let n: usize = arg.parse().unwrap_or(0);
                    for i in 0..n {
                        oscar_guest::write_output(&format!("many/{i:06}.txt"), "x")?;
                    }
                }
                "spam" => {
                    let n: usize = arg.parse().unwrap_or(0);
                    let mut out = std::io::stdout().lock();
                    for _ in 0..n / 64 {
                        out.write_all(&[b'y'; 64])?;
                    }
                }
                "env" => {
                    let mut vars: Vec<String> =
                        std::env::vars().map(|(k, v)| format!("{k}={v}")).collect();
                    vars.sort();
                    for v in vars {
                        println!("env {v}");
                    }
                }
                "print" => println!("{arg}"),
                "stderr" => eprintln!("{arg}"),
                "sleep" => {
                    std::thread::sleep(std::time::Duration::from_millis(arg.parse().unwrap_or(0)))
                }
                "exit" => {
                    let _ = std::io::stdout().flush();
                    std::process::exit(arg.parse().unwrap_or(1));
                }
                "panic" => panic!("probe asked to panic"),
                "" => {}
                other => println!("unknown command {other}"),
            }
        }
        Ok(())
    })
}

/// `path_symlink` relative to the output folder (the second preopen, fd 4); std's wrapper for
/// it is not stable yet.
#[cfg(target_os = "wasi")]
fn symlink_in_output(target: &str, link: &str) -> std::io::Result<()> {
    #[link(wasm_import_module = "wasi_snapshot_preview1")]
    unsafe extern "C" {
        fn path_symlink(
            old: *const u8,
            old_len: usize,
            fd: u32,
            new: *const u8,
            new_len: usize,
        ) -> u16;
    }
    // SAFETY: both pointers and lengths come from live &str values.
    let errno =
        unsafe { path_symlink(target.as_ptr(), target.len(), 4, link.as_ptr(), link.len()) };
    if errno == 0 {
        Ok(())
    } else {
        Err(std::io::Error::other(format!("errno {errno}")))
    }
}

#[cfg(not(target_os = "wasi"))]
fn symlink_in_output(_: &str, _: &str) -> std::io::Result<()> {
    Err(std::io::Error::other("only under WASI"))
}
