//! Turns a PNG or JPEG image gray: one image in, one PNG out (`<input stem>-gray.png`), the
//! flavour of OSCAR's own ImageMagick examples. The format is read from the bytes, not the
//! name, since an HTTP input file is called `event-file-<uuid>`.

use std::io::Cursor;

fn main() {
    oscar_guest::run(|input| {
        let bytes = input.read()?;
        let image = image::load_from_memory(&bytes).map_err(|e| {
            oscar_guest::Error::msg(format!("the input is not a PNG or JPEG image: {e}"))
        })?;
        let gray = image.grayscale();
        let mut png = Vec::new();
        gray.write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png)?;
        let name = format!("{}-gray.png", input.stem());
        oscar_guest::write_output(&name, &png)?;
        println!("{}: {}x{} to gray", name, gray.width(), gray.height());
        Ok(())
    })
}
