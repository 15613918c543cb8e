//! PURE: image references (`name[:tag][@sha256:…]`) as the store keys them.

use super::digest::Digest;

/// A reference split for the store: the canonical `registry/repository:tag` name and the
/// digest, if pinned.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageName {
    /// `registry/repository:tag` (Docker Hub names normalised: `busybox` is
    /// `docker.io/library/busybox:latest`).
    pub name: String,
    /// The pinned digest.
    pub digest: Option<Digest>,
}

impl ImageName {
    /// Parses a reference (`name[:tag][@sha256:…]`).
    pub fn parse(s: &str) -> Result<ImageName, String> {
        let shown: String = s.chars().take(200).collect();
        if s.len() > 1024 {
            return Err(format!("`{shown}…` is too long for an image reference"));
        }
        let r: oci_spec::distribution::Reference = s
            .parse()
            .map_err(|e| format!("`{shown}` is not a valid image reference: {e}"))?;
        let digest = r.digest().map(Digest::parse).transpose()?;
        let name = format!(
            "{}/{}:{}",
            r.registry(),
            r.repository(),
            r.tag().unwrap_or("latest")
        );
        Ok(ImageName { name, digest })
    }
}

impl std::fmt::Display for ImageName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.digest {
            Some(d) => write!(f, "{}@{d}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_canonical() {
        let n = ImageName::parse("busybox").unwrap();
        assert_eq!(n.name, "docker.io/library/busybox:latest");
        let d = format!("sha256:{}", "a".repeat(64));
        let n = ImageName::parse(&format!("127.0.0.1:5000/team/web:1.4@{d}")).unwrap();
        assert_eq!(n.name, "127.0.0.1:5000/team/web:1.4");
        assert_eq!(n.digest.unwrap().as_str(), d);
        assert!(ImageName::parse("has space").is_err());
        assert!(
            ImageName::parse("team/Web").is_err(),
            "repositories are lowercase"
        );
        assert!(ImageName::parse(&format!("web@sha256:{}", "a".repeat(10))).is_err());
        assert!(ImageName::parse(&"a".repeat(2000)).is_err());
    }
}
