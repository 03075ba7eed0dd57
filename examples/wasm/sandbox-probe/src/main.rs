//! A diagnostic module that shows what a module can and cannot reach. Its input is a list of
//! commands, one a line; it prints one result line per command:
//!
//! - `read PATH`: read a file; `list PATH`: list a folder; `write PATH TEXT`: write a file;
//! - `env`: print the environment; `print TEXT`, `stderr TEXT`: print;
//! - `sleep MS`; `exit CODE`; `panic`; `output NAME TEXT`: write an output file.
//!
//! - `remove PATH`: remove a file.
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
            let line = line.replace("$INPUT", &input_file).replace("$IN", &in_dir).replace("$OUT", &out_dir);
            let (cmd, arg) = line.split_once(' ').unwrap_or((line.as_str(), ""));
            match cmd {
                "read" => match std::fs::read(arg) {
                    Ok(b) => println!("read {arg}: ok {} bytes", b.len()),
                    Err(e) => println!("read {arg}: denied ({e})"),
                },
                "list" => match std::fs::read_dir(arg) {
                    Ok(entries) => {
                        let mut names: Vec<String> =
                            entries.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect();
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
                "env" => {
                    let mut vars: Vec<String> = std::env::vars().map(|(k, v)| format!("{k}={v}")).collect();
                    vars.sort();
                    for v in vars {
                        println!("env {v}");
                    }
                }
                "print" => println!("{arg}"),
                "stderr" => eprintln!("{arg}"),
                "sleep" => std::thread::sleep(std::time::Duration::from_millis(arg.parse().unwrap_or(0))),
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
