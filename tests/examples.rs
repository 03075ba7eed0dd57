//! End-to-end tests of the example modules in examples/wasm/: each is deployed from its own
//! FDL file with the CLI, as its README section says, invoked over HTTP with a real input, and
//! its output checked.

mod common;

use common::*;
use image::{GenericImageView, ImageFormat, Rgb, RgbImage};
use serde_json::{Value, json};
use std::io::Cursor;

/// A server with the example `name` deployed from examples/wasm/NAME/service.yaml.
fn deployed(name: &str) -> (TestDir, tempfile::TempDir, Server) {
    let dir = TestDir::new();
    let server = Server::start(&dir.data(), &[]);
    let home = tempfile::tempdir().unwrap();
    oscar_cli(
        Some(&server.base),
        home.path(),
        &[
            "service",
            "apply",
            &format!("examples/wasm/{name}/service.yaml"),
            "--module",
            &format!("examples/wasm/dist/{name}.wasm"),
        ],
        b"",
    )
    .ok();
    (dir, home, server)
}

/// POST /run with `input`; asserts success and returns the decoded single output file and
/// the name the server gives it.
fn run_one(server: &Server, name: &str, input: &[u8]) -> (Vec<u8>, String) {
    let response = client()
        .post(server.url(&format!("/run/{name}")))
        .body(b64(input))
        .send()
        .unwrap();
    let status = response.status();
    let kind = response
        .headers()
        .get("x-oscar-wasm-output")
        .map(|v| v.to_str().unwrap().to_string());
    let file = response
        .headers()
        .get("x-oscar-wasm-output-name")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let body = response.bytes().unwrap();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(kind.as_deref(), Some("file"));
    (unb64(&body), file)
}

/// A colourful test picture: red, green and blue all vary, so no pixel is gray.
fn picture(width: u32, height: u32) -> RgbImage {
    RgbImage::from_fn(width, height, |x, y| {
        Rgb([
            (40 + x * 200 / width) as u8,
            (30 + y * 180 / height) as u8,
            (200 - (x + y) * 100 / (width + height)) as u8,
        ])
    })
}

fn encode(image: &RgbImage, format: ImageFormat) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    image.write_to(&mut out, format).unwrap();
    out.into_inner()
}

#[test]
fn grayscale_turns_jpeg_and_png_gray() {
    let (_d, _h, server) = deployed("grayscale");
    for format in [ImageFormat::Jpeg, ImageFormat::Png] {
        let input = picture(96, 64);
        let (png, name) = run_one(&server, "grayscale", &encode(&input, format));
        assert!(name.ends_with("-gray.png"), "{name}");
        let out = image::load_from_memory_with_format(&png, ImageFormat::Png)
            .expect("the output is a PNG");
        assert_eq!(out.dimensions(), (96, 64), "{format:?}");
        assert_eq!(out.color(), image::ColorType::L8, "{format:?}");
        // Gray, and not a blank: the picture's brightness varies, so must the output's.
        let luma = out.to_luma8();
        let (min, max) = luma
            .pixels()
            .fold((255u8, 0u8), |(lo, hi), p| (lo.min(p[0]), hi.max(p[0])));
        assert!(max - min > 40, "{format:?}: {min}..{max}");
    }
    // The committed sample of the README.
    let sample = std::fs::read(repo_root().join("examples/images/sample.jpg")).unwrap();
    let (png, _) = run_one(&server, "grayscale", &sample);
    let out = image::load_from_memory(&png).unwrap();
    assert_eq!(out.dimensions(), (320, 200));
    // Not an image: the module says so and fails.
    let (status, outcome, body) = run(&server, "grayscale", b64(b"plain text"));
    assert_eq!((status, outcome.as_str()), (500, "exit:1"));
    assert!(String::from_utf8_lossy(&body).contains("not a PNG or JPEG"));
}

#[test]
fn thumbnail_fits_the_size_variable() {
    let (_d, _h, server) = deployed("thumbnail");
    // service.yaml sets SIZE=64: 300x200 becomes 64 wide, aspect ratio kept.
    let (png, name) = run_one(
        &server,
        "thumbnail",
        &encode(&picture(300, 200), ImageFormat::Png),
    );
    assert!(name.ends_with("-thumb.png"), "{name}");
    let out = image::load_from_memory_with_format(&png, ImageFormat::Png).unwrap();
    assert_eq!(out.width(), 64);
    assert!((42..=43).contains(&out.height()), "{:?}", out.dimensions());
    // Still in colour.
    let rgb = out.to_rgb8();
    assert!(rgb.pixels().any(|p| p[0] != p[1] || p[1] != p[2]));
    // Smaller images are not enlarged; JPEG in, PNG out.
    let (png, _) = run_one(
        &server,
        "thumbnail",
        &encode(&picture(40, 30), ImageFormat::Jpeg),
    );
    let out = image::load_from_memory_with_format(&png, ImageFormat::Png).unwrap();
    assert_eq!(out.dimensions(), (40, 30));
}

#[test]
fn csv_to_json_keeps_columns_and_quoting() {
    let (_d, _h, server) = deployed("csv-to-json");
    let csv = "id,name,city\n007,\"Doe, Jane\",Zürich\n2,\"say \"\"hi\"\"\",\n";
    let (json_bytes, name) = run_one(&server, "csv-to-json", csv.as_bytes());
    assert!(name.ends_with(".json"), "{name}");
    let rows: Value = serde_json::from_slice(&json_bytes).unwrap();
    assert_eq!(
        rows,
        json!([
            {"id": "007", "name": "Doe, Jane", "city": "Zürich"},
            {"id": "2", "name": "say \"hi\"", "city": ""}
        ])
    );
    // Column order is the file's.
    let text = String::from_utf8(json_bytes).unwrap();
    assert!(text.find("\"id\"").unwrap() < text.find("\"name\"").unwrap());
    // A ragged row fails with the row number.
    let (status, _, body) = run(&server, "csv-to-json", b64(b"a,b\n1,2,3\n"));
    assert_eq!(status, 500);
    assert!(
        String::from_utf8_lossy(&body).contains("row 2"),
        "{}",
        String::from_utf8_lossy(&body)
    );
}

#[test]
fn word_count_counts_like_wc() {
    let (_d, _h, server) = deployed("word-count");
    let text = "The quick brown fox.\nThe lazy dog, the end!\n\nFox?\n";
    let (counts, name) = run_one(&server, "word-count", text.as_bytes());
    assert_eq!(name, "counts.json");
    // service.yaml sets TOP=5.
    assert_eq!(
        String::from_utf8(counts).unwrap(),
        "{\"lines\": 4, \"words\": 10, \"bytes\": 50, \"top\": [{\"word\": \"the\", \"count\": 3}, \
         {\"word\": \"fox\", \"count\": 2}, {\"word\": \"brown\", \"count\": 1}, \
         {\"word\": \"dog\", \"count\": 1}, {\"word\": \"end\", \"count\": 1}]}\n"
    );
}

/// `hexdump -Cv` of `bytes`, the reference the C example is checked against.
fn hexdump(bytes: &[u8]) -> String {
    let mut out = String::new();
    for (i, row) in bytes.chunks(16).enumerate() {
        out.push_str(&format!("{:08x} ", i * 16));
        for j in 0..16 {
            if j == 8 {
                out.push(' ');
            }
            match row.get(j) {
                Some(b) => out.push_str(&format!(" {b:02x}")),
                None => out.push_str("   "),
            }
        }
        out.push_str("  |");
        out.extend(row.iter().map(|&b| {
            if (0x20..0x7f).contains(&b) {
                b as char
            } else {
                '.'
            }
        }));
        out.push_str("|\n");
    }
    if !bytes.is_empty() {
        out.push_str(&format!("{:08x}\n", bytes.len()));
    }
    out
}

#[test]
fn c_hexdump_matches_hexdump_c() {
    let (_d, _h, server) = deployed("c-hexdump");
    let mut input: Vec<u8> = b"hello, wasm!\n".to_vec();
    input.extend((0..=255u8).rev());
    input.extend(b"tail");
    let (dump, name) = run_one(&server, "c-hexdump", &input);
    assert_eq!(name, "hexdump.txt");
    assert_eq!(String::from_utf8(dump).unwrap(), hexdump(&input));
    // The C module's own line is in the logs when it writes nothing; an empty input writes an
    // empty dump, which still counts as one output file.
    let (empty, _) = run_one(&server, "c-hexdump", b"");
    assert!(empty.is_empty());
}

#[test]
fn split_lines_fdl_sets_its_prefix() {
    let (_d, _h, server) = deployed("split-lines");
    let (status, _, body) = run(&server, "split-lines", b64(b"a\nb\n"));
    assert_eq!(status, 200);
    let zip = unb64(&body);
    let mut archive = zip::ZipArchive::new(Cursor::new(zip)).unwrap();
    let mut names: Vec<String> = archive.file_names().map(str::to_string).collect();
    names.sort();
    assert_eq!(names, ["lines/0001.txt", "lines/0002.txt", "summary.json"]);
    let mut first = String::new();
    std::io::Read::read_to_string(&mut archive.by_name("lines/0001.txt").unwrap(), &mut first)
        .unwrap();
    assert_eq!(first, "> a\n");
}

/// The recognised digit of a `digits` answer, after checking its probabilities.
fn digit_of(answer: &[u8]) -> u64 {
    let answer: Value = serde_json::from_slice(answer).unwrap();
    let probabilities: Vec<f64> = answer["probabilities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_f64().unwrap())
        .collect();
    assert_eq!(probabilities.len(), 10, "{answer}");
    let total: f64 = probabilities.iter().sum();
    assert!((total - 1.0).abs() < 0.01, "{answer}");
    let digit = answer["digit"].as_u64().unwrap();
    assert_eq!(
        answer["probability"].as_f64(),
        Some(probabilities[digit as usize])
    );
    digit
}

#[test]
fn digits_recognises_handwritten_digits_with_a_neural_network() {
    let (_d, _h, server) = deployed("digits");
    // Held-out scans of the data set (model/train.py), dark ink on white, 32x32: each is
    // recognised as the digit it is.
    for digit in 0..10u64 {
        let png =
            std::fs::read(repo_root().join(format!("examples/wasm/digits/samples/{digit}.png")))
                .unwrap();
        let (answer, name) = run_one(&server, "digits", &png);
        assert!(name.ends_with(".json"), "{name}");
        assert_eq!(
            digit_of(&answer),
            digit,
            "{}",
            String::from_utf8_lossy(&answer)
        );
    }
    // Light ink on a dark ground, enlarged again and as JPEG: the same digit.
    let mut three = image::load_from_memory(
        &std::fs::read(repo_root().join("examples/wasm/digits/samples/3.png")).unwrap(),
    )
    .unwrap()
    .resize_exact(96, 96, image::imageops::FilterType::Nearest)
    .to_rgb8();
    image::imageops::invert(&mut three);
    let (answer, _) = run_one(&server, "digits", &encode(&three, ImageFormat::Jpeg));
    assert_eq!(digit_of(&answer), 3, "{}", String::from_utf8_lossy(&answer));
    // A feature file of 64 numbers, as the UCI data set writes a scan.
    let features =
        std::fs::read(repo_root().join("examples/wasm/digits/samples/features.txt")).unwrap();
    let (answer, _) = run_one(&server, "digits", &features);
    assert_eq!(digit_of(&answer), 7);
    // Anything else is refused with the reason.
    for (bad, reason) in [
        (&b"1 2 3"[..], "holds 3"),
        (&b"17 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0"[..], "\"17\" is not a number from 0 to 16"),
        (&[0xff, 0xfe, 0x00][..], "neither a PNG or JPEG image"),
    ] {
        let (status, outcome, body) = run(&server, "digits", b64(bad));
        assert_eq!((status, outcome.as_str()), (500, "exit:1"));
        let body = String::from_utf8_lossy(&body);
        assert!(body.contains(reason), "{body}");
    }
}
