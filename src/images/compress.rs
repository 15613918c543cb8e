//! Layer compression: the media type says what a blob is, the magic bytes must agree.

use std::io::{self, BufRead, BufReader, Read};

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// A plain tar.
    None,
    /// gzip (any number of members: pigz and eStargz write several).
    Gzip,
    /// zstd (skippable frames, as zstd:chunked writes them, are skipped).
    Zstd,
}

impl Compression {
    /// From a layer media type (OCI and Docker, including buildkit's non-standard
    /// `…diff.tar.zstd`); `None` for a media type that is not a layer.
    pub fn from_media_type(mt: &str) -> Option<Compression> {
        let base = mt
            .strip_prefix("application/vnd.oci.image.layer.")
            .or_else(|| {
                mt.strip_prefix("application/vnd.docker.image.rootfs.")
                    .or_else(|| mt.strip_prefix("application/vnd.docker.image.rootfs.foreign."))
            })?;
        Some(match base {
            "v1.tar" | "nondistributable.v1.tar" | "diff.tar" => Compression::None,
            "v1.tar+gzip" | "nondistributable.v1.tar+gzip" | "diff.tar.gzip" => Compression::Gzip,
            "v1.tar+zstd" | "nondistributable.v1.tar+zstd" | "diff.tar.zstd" => Compression::Zstd,
            _ => return None,
        })
    }

    /// The OCI media type for a layer compressed this way.
    pub fn oci_media_type(self) -> &'static str {
        match self {
            Compression::None => "application/vnd.oci.image.layer.v1.tar",
            Compression::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
            Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
        }
    }

    /// What the first bytes say.
    pub fn sniff(head: &[u8]) -> Compression {
        if head.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd])
            || (head.len() >= 4 && head[0] & 0xf0 == 0x50 && head[1..4] == [0x2a, 0x4d, 0x18])
        {
            // A zstd frame, or a skippable frame (0x184D2A5?) in front of one.
            Compression::Zstd
        } else {
            Compression::None
        }
    }
}

/// A decompressing reader over `input`, after checking that the content matches `expected`.
/// It reads ahead of the decoder (a 64 KiB buffer): a hasher under `input` has seen every byte
/// once the caller drains `input` after the decoder is done.
pub fn decompress<'a, R: Read + 'a>(
    input: R,
    expected: Compression,
    what: &str,
) -> io::Result<Box<dyn Read + 'a>> {
    let mut buf = BufReader::with_capacity(64 * 1024, input);
    let head = buf.fill_buf()?;
    let found = Compression::sniff(head);
    // An empty blob is a valid, empty plain tar only.
    if found != expected && !(head.is_empty() && expected == Compression::None) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{what}: the media type says {expected:?} but the content is {found:?}"),
        ));
    }
    Ok(match expected {
        Compression::None => Box::new(buf),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(buf)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(buf)?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn media_types() {
        use Compression::*;
        for (mt, c) in [
            ("application/vnd.oci.image.layer.v1.tar", None),
            ("application/vnd.oci.image.layer.v1.tar+gzip", Gzip),
            ("application/vnd.oci.image.layer.v1.tar+zstd", Zstd),
            ("application/vnd.docker.image.rootfs.diff.tar.gzip", Gzip),
            ("application/vnd.docker.image.rootfs.diff.tar.zstd", Zstd),
        ] {
            assert_eq!(Compression::from_media_type(mt), Some(c), "{mt}");
        }
        assert_eq!(
            Compression::from_media_type("application/vnd.oci.image.config.v1+json"),
            Option::None
        );
    }

    #[test]
    fn multi_member_gzip_is_read_to_the_end() {
        let mut all = Vec::new();
        for part in [&b"hello "[..], b"world"] {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(part).unwrap();
            all.extend(e.finish().unwrap());
        }
        let mut out = String::new();
        decompress(&all[..], Compression::Gzip, "l")
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        assert_eq!(out, "hello world");
    }

    #[test]
    fn zstd_with_a_skippable_frame_and_mismatches() {
        let mut blob = vec![0x50, 0x2a, 0x4d, 0x18, 4, 0, 0, 0, 1, 2, 3, 4];
        blob.extend(zstd::encode_all(&b"data"[..], 1).unwrap());
        let mut out = Vec::new();
        decompress(&blob[..], Compression::Zstd, "l")
            .unwrap()
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, b"data");
        let e = decompress(&blob[..], Compression::Gzip, "layer 2")
            .err()
            .unwrap();
        assert!(
            e.to_string().contains("says Gzip but the content is Zstd"),
            "{e}"
        );
    }
}
