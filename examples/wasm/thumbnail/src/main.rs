//! Makes a thumbnail of a PNG or JPEG image: it fits inside `SIZE` x `SIZE` pixels (service
//! variable, default 128), keeping its aspect ratio, and comes out as PNG
//! (`<input stem>-thumb.png`). Images already smaller are not enlarged.

use std::io::Cursor;

fn main() {
    oscar_guest::run(|input| {
        let size: u32 = oscar_guest::var_or("SIZE", 128)?;
        if size == 0 {
            return Err(oscar_guest::Error::msg("SIZE must be at least 1").into());
        }
        let bytes = input.read()?;
        let image = image::load_from_memory(&bytes).map_err(|e| {
            oscar_guest::Error::msg(format!("the input is not a PNG or JPEG image: {e}"))
        })?;
        let thumb = if image.width() <= size && image.height() <= size {
            image
        } else {
            image.thumbnail(size, size)
        };
        let mut png = Vec::new();
        thumb.write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png)?;
        let name = format!("{}-thumb.png", input.stem());
        oscar_guest::write_output(&name, &png)?;
        println!("{}: {}x{}", name, thumb.width(), thumb.height());
        Ok(())
    })
}
