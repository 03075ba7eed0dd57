//! Recognises a handwritten digit with a small neural network run by tract (an ONNX runtime in
//! pure Rust) inside the guest: OSCAR's image-classification first example, as wasm.
//!
//! The input is an image (PNG or JPEG, any size, ink darker or lighter than the paper) or a
//! feature file of 64 numbers from 0 to 16 (an 8x8 scan as in the UCI digits data set). The
//! output is `<input stem>.json`: the digit, its probability, and all ten probabilities. The
//! network (model/digits.onnx, made by model/train.py) is compiled into the module, so a call
//! needs no model download and no host support.

use std::io::Cursor;

use tract_onnx::prelude::*;

/// The trained network: 64 pixels in, ten probabilities out.
const MODEL: &[u8] = include_bytes!("../model/digits.onnx");
/// Side of the square the network reads, and the ink scale of its training data.
const SIDE: usize = 8;
const FULL_INK: f32 = 16.0;

fn main() {
    oscar_guest::run(|input| {
        let bytes = input.read()?;
        let pixels = features(&bytes)?;
        let probabilities = classify(pixels).map_err(|e| format!("the network failed: {e}"))?;
        let (digit, p) = probabilities
            .iter()
            .copied()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .ok_or("the network gave no probabilities")?;
        let all: Vec<String> = probabilities.iter().map(|p| format!("{p:.4}")).collect();
        let json = format!(
            "{{\"digit\":{digit},\"probability\":{p:.4},\"probabilities\":[{}]}}\n",
            all.join(",")
        );
        oscar_guest::write_output(&format!("{}.json", input.stem()), &json)?;
        println!("{}: digit {digit} (p = {p:.3})", input.file_name());
        Ok(())
    })
}

/// The 64 features the network expects, each ink scaled to 0..1.
fn features(bytes: &[u8]) -> Result<Vec<f32>, Box<dyn std::error::Error>> {
    if let Ok(image) = image::load_from_memory(bytes) {
        return Ok(image_features(&image.to_luma8()));
    }
    let text = std::str::from_utf8(bytes)
        .map_err(|_| "the input is neither a PNG or JPEG image nor a text file of 64 numbers")?;
    let numbers: Vec<&str> = text
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|s| !s.is_empty())
        .collect();
    if numbers.len() != SIDE * SIDE {
        return Err(format!(
            "a feature file holds {} numbers from 0 to 16; this one holds {}",
            SIDE * SIDE,
            numbers.len()
        )
        .into());
    }
    numbers
        .iter()
        .map(|s| match s.parse::<f32>() {
            Ok(v) if (0.0..=FULL_INK).contains(&v) => Ok(v / FULL_INK),
            _ => Err(format!("{s:?} is not a number from 0 to 16").into()),
        })
        .collect()
}

/// Averages the image over an 8x8 grid of cells, as the data set's scans were made, with ink
/// as the darker side unless the paper is dark.
fn image_features(gray: &image::GrayImage) -> Vec<f32> {
    let (w, h) = (gray.width() as usize, gray.height() as usize);
    let mean = gray.pixels().map(|p| f64::from(p.0[0])).sum::<f64>() / (w * h).max(1) as f64;
    let dark_ink = mean >= 128.0;
    let mut cells = Vec::with_capacity(SIDE * SIDE);
    for row in 0..SIDE {
        for col in 0..SIDE {
            // Each cell covers at least one pixel, so images smaller than 8x8 still work.
            let (y0, x0) = (row * h / SIDE, col * w / SIDE);
            let (y1, x1) = (((row + 1) * h / SIDE).max(y0 + 1), ((col + 1) * w / SIDE).max(x0 + 1));
            let (mut sum, mut n) = (0.0f32, 0.0f32);
            for y in y0..y1.min(h) {
                for x in x0..x1.min(w) {
                    let v = f32::from(gray.get_pixel(x as u32, y as u32).0[0]) / 255.0;
                    sum += if dark_ink { 1.0 - v } else { v };
                    n += 1.0;
                }
            }
            cells.push(if n > 0.0 { sum / n } else { 0.0 });
        }
    }
    cells
}

/// Runs the network on one example.
fn classify(pixels: Vec<f32>) -> TractResult<Vec<f32>> {
    let model = tract_onnx::onnx()
        .model_for_read(&mut Cursor::new(MODEL))?
        .into_optimized()?
        .into_runnable()?;
    let input = Tensor::from_shape(&[1, SIDE * SIDE], &pixels)?;
    let outputs = model.run(tvec!(input.into()))?;
    Ok(outputs[0].to_array_view::<f32>()?.iter().copied().collect())
}

/// Debian 12's wasi-libc (which scripts/build-guests.sh links against when there is no rustup
/// target) has no `realpath`, which std's `fs::canonicalize` calls and tract links in; the
/// guest never canonicalizes a path, so this only has to fail. (wasi-libc of a rustup target
/// has its own, which this one stands in for: an archive member is only taken when needed.)
#[cfg(all(target_os = "wasi", not(test)))]
#[unsafe(no_mangle)]
extern "C" fn realpath(_path: *const u8, _resolved: *mut u8) -> *mut u8 {
    std::ptr::null_mut()
}
