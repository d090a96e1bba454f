//! Compressed copies of the pages kept in memory (issue 17). A page of
//! tickets is about 150 KB of JSON; compressing it for every request cost
//! more CPU than serving it from memory saved. A page in the cache keeps
//! one compressed copy per encoding a client asked for, made once, at the
//! level the response layer uses for everything else (each codec's
//! fastest), so a hit costs a lookup and a write whatever the client
//! accepts.
//!
//! Negotiation follows the response layer's (`tower-http`): the accepted
//! encoding with the highest q-value wins, ties going to zstd, then br,
//! then gzip. Anything else (identity preferred, only `deflate`) is left
//! to that layer, which then treats the page like any other response.

use std::io::Write;

use axum::extract::FromRequestParts;
use axum::http::header::ACCEPT_ENCODING;
use axum::http::request::Parts;
use axum::http::HeaderValue;
use bytes::Bytes;

/// Answers smaller than this are never compressed (see `routes`).
pub(crate) const MIN_BYTES: u16 = 1024;

/// A response encoding the cache keeps copies in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Encoding {
    // Declared in the order ties are broken (the last wins).
    Gzip,
    Brotli,
    Zstd,
}

impl Encoding {
    /// How many there are (the last one's index, plus one).
    pub(crate) const COUNT: usize = Encoding::Zstd as usize + 1;

    pub(crate) fn index(self) -> usize {
        self as usize
    }

    pub(crate) fn header_value(self) -> HeaderValue {
        HeaderValue::from_static(match self {
            Encoding::Gzip => "gzip",
            Encoding::Brotli => "br",
            Encoding::Zstd => "zstd",
        })
    }

    /// `body` compressed at this codec's fastest level.
    pub(crate) fn compress(self, body: &[u8]) -> std::io::Result<Bytes> {
        let compressed = match self {
            Encoding::Gzip => {
                let mut encoder = flate2::write::GzEncoder::new(
                    Vec::with_capacity(body.len() / 4),
                    flate2::Compression::fast(),
                );
                encoder.write_all(body)?;
                encoder.finish()?
            }
            Encoding::Brotli => {
                let mut out = Vec::with_capacity(body.len() / 4);
                {
                    // Quality 0, window 2^22 (brotli's default).
                    let mut writer = brotli::CompressorWriter::new(&mut out, 4096, 0, 22);
                    writer.write_all(body)?;
                    writer.flush()?;
                }
                out
            }
            Encoding::Zstd => zstd::bulk::compress(body, 1)?,
        };
        Ok(Bytes::from(compressed))
    }

    fn parse(name: &str) -> Option<Self> {
        match name {
            "gzip" | "x-gzip" => Some(Encoding::Gzip),
            "br" => Some(Encoding::Brotli),
            "zstd" => Some(Encoding::Zstd),
            _ => None,
        }
    }
}

/// The cached encoding a request's `Accept-Encoding` prefers, if any.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct AcceptEncoding(pub(crate) Option<Encoding>);

impl AcceptEncoding {
    pub(crate) fn negotiate(header: Option<&HeaderValue>) -> Self {
        let Some(header) = header.and_then(|value| value.to_str().ok()) else {
            return Self(None);
        };
        // (q in thousandths, the encoding or None for anything not cached)
        let mut best: Option<(u16, Option<Encoding>)> = None;
        for item in header.split(',') {
            let mut parts = item.split(';');
            let name = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
            if name.is_empty() {
                continue;
            }
            let Some(q) = parts
                .find_map(|param| {
                    let (key, value) = param.split_once('=')?;
                    (key.trim().eq_ignore_ascii_case("q")).then(|| qvalue(value.trim()))
                })
                .unwrap_or(Some(1000))
            else {
                // A malformed q-value: the layer decides for this request.
                return Self(None);
            };
            if q == 0 {
                continue;
            }
            let candidate = (q, Encoding::parse(&name));
            let better = match best {
                None => true,
                Some((best_q, best_encoding)) => {
                    q > best_q || (q == best_q && candidate.1 > best_encoding)
                }
            };
            if better {
                best = Some(candidate);
            }
        }
        Self(best.and_then(|(_, encoding)| encoding))
    }
}

/// A q-value as thousandths (RFC 9110 12.4.2: 0 to 1, three decimals).
fn qvalue(raw: &str) -> Option<u16> {
    let (whole, fraction) = raw.split_once('.').unwrap_or((raw, ""));
    if fraction.len() > 3 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let thousandths = format!("{fraction:0<3}").parse::<u16>().ok()?;
    match whole {
        "0" => Some(thousandths),
        "1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

impl<S: Send + Sync> FromRequestParts<S> for AcceptEncoding {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self::negotiate(parts.headers.get(ACCEPT_ENCODING)))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::io::Read;

    use super::*;

    fn negotiate(header: &str) -> Option<Encoding> {
        AcceptEncoding::negotiate(Some(&HeaderValue::from_str(header).unwrap())).0
    }

    #[test]
    fn the_highest_q_wins_and_ties_go_to_zstd_then_br_then_gzip() {
        assert_eq!(negotiate("gzip"), Some(Encoding::Gzip));
        assert_eq!(negotiate("gzip, br"), Some(Encoding::Brotli));
        assert_eq!(negotiate("gzip, br, zstd"), Some(Encoding::Zstd));
        assert_eq!(negotiate("zstd;q=0.5, gzip"), Some(Encoding::Gzip));
        assert_eq!(negotiate("br;q=0.9, gzip;q=0.8"), Some(Encoding::Brotli));
        assert_eq!(negotiate("GZIP"), Some(Encoding::Gzip));
    }

    #[test]
    fn what_the_cache_does_not_keep_is_left_to_the_response_layer() {
        assert_eq!(AcceptEncoding::negotiate(None).0, None);
        assert_eq!(negotiate(""), None);
        assert_eq!(negotiate("identity"), None);
        assert_eq!(negotiate("deflate"), None);
        assert_eq!(negotiate("gzip;q=0"), None);
        assert_eq!(negotiate("identity, gzip;q=0.5"), None);
        assert_eq!(negotiate("gzip;q=2"), None);
        assert_eq!(negotiate("gzip;q=abc"), None);
    }

    #[test]
    fn each_copy_decompresses_to_the_page() {
        let body: Vec<u8> = br#"{"title":"concert","price":10}"#.repeat(500);
        let gzip = Encoding::Gzip.compress(&body).unwrap();
        let mut unzipped = Vec::new();
        flate2::read::GzDecoder::new(&gzip[..])
            .read_to_end(&mut unzipped)
            .unwrap();
        assert_eq!(unzipped, body);

        let br = Encoding::Brotli.compress(&body).unwrap();
        let mut unbrotli = Vec::new();
        brotli::Decompressor::new(&br[..], 4096)
            .read_to_end(&mut unbrotli)
            .unwrap();
        assert_eq!(unbrotli, body);

        let zstd = Encoding::Zstd.compress(&body).unwrap();
        assert_eq!(zstd::decode_all(&zstd[..]).unwrap(), body);
        assert!(gzip.len() < body.len() / 4 && zstd.len() < body.len() / 4);
    }
}
