//! A header map as the proxy-wasm host serializes it, read in place: names and values are
//! slices of the one buffer the host hands over. Every request's headers are read, and the
//! SDK's own reader copies each name and value into an allocation of its own (two per
//! header) and panics on a name that is not UTF-8; this reader validates the text once,
//! allocates once more per request (the entries' positions), and never panics.
//!
//! The format (proxy-wasm ABI): a little-endian u32 count, then a (name length, value length)
//! pair of u32s per entry, then each name and value, each followed by a NUL byte.

use std::ops::Range;

/// Text standing for a header whose bytes cannot be read as text (never the case for a valid
/// buffer): it can only fail checks, never pass them.
const REPLACEMENT: &str = "\u{FFFD}";

/// The names and values of a serialized header map, as one text, and where each entry lies
/// in it.
#[derive(Debug, Default, Clone)]
pub struct HeaderPairs {
    text: String,
    entries: Vec<(Range<usize>, Range<usize>)>,
}

impl HeaderPairs {
    /// Reads a serialized map. A truncated or inconsistent buffer keeps the entries that were
    /// complete; a name that is not UTF-8 (hosts never send one) is skipped, and a value that
    /// is not is replaced lossily.
    pub fn parse(mut buffer: Vec<u8>) -> HeaderPairs {
        let count = read_u32(&buffer, 0).unwrap_or(0);
        let data_start = 4usize.saturating_add(count.saturating_mul(8));
        // Each entry takes at least 10 bytes (two lengths, two NULs): a count beyond that is
        // a lie, and must not size an allocation.
        let mut entries = Vec::with_capacity(count.min(buffer.len() / 10));
        let mut at = data_start;
        for n in 0..count {
            let lengths = 4 + n * 8;
            let (Some(name_len), Some(value_len)) =
                (read_u32(&buffer, lengths), read_u32(&buffer, lengths + 4))
            else {
                break;
            };
            let name = at..at.saturating_add(name_len);
            let value_start = name.end.saturating_add(1);
            let value = value_start..value_start.saturating_add(value_len);
            if value.end > buffer.len() {
                break;
            }
            at = value.end.saturating_add(1);
            entries.push((name, value));
        }
        if entries.is_empty() {
            return HeaderPairs::default();
        }
        // Names and values as one text, validated once: the lengths table goes, and the rest
        // (names and values between NUL bytes) is nearly always UTF-8 as a whole.
        let shift =
            |r: &Range<usize>| r.start.saturating_sub(data_start)..r.end.saturating_sub(data_start);
        buffer.drain(..data_start.min(buffer.len()));
        match String::from_utf8(buffer) {
            Ok(text) => HeaderPairs {
                text,
                entries: entries.iter().map(|(n, v)| (shift(n), shift(v))).collect(),
            },
            Err(error) => Self::rebuilt_lossily(error.as_bytes(), &entries, data_start),
        }
    }

    /// The slow path for bytes that are not all UTF-8: each entry copied into a new text.
    fn rebuilt_lossily(
        bytes: &[u8],
        entries: &[(Range<usize>, Range<usize>)],
        data_start: usize,
    ) -> HeaderPairs {
        let mut pairs = HeaderPairs::default();
        for (name, value) in entries {
            let slice = |r: &Range<usize>| {
                bytes.get(r.start.saturating_sub(data_start)..r.end.saturating_sub(data_start))
            };
            let (Some(name), Some(value)) = (slice(name), slice(value)) else {
                continue;
            };
            let Ok(name) = std::str::from_utf8(name) else {
                continue;
            };
            let name_range = pairs.push(name);
            let value_range = pairs.push(&String::from_utf8_lossy(value));
            pairs.entries.push((name_range, value_range));
        }
        pairs
    }

    fn push(&mut self, text: &str) -> Range<usize> {
        let start = self.text.len();
        self.text.push_str(text);
        start..self.text.len()
    }

    /// Every entry, in the host's order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries
            .iter()
            .map(|(name, value)| (self.text(name), self.text(value)))
    }

    /// The first value of `name` (names are lower case, as the host gives them).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    /// Every value of `name`.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.iter().filter(move |(n, _)| *n == name).map(|(_, v)| v)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// A range that does not fall on character boundaries comes only from a buffer whose
    /// lengths lie; it reads as the replacement text.
    fn text(&self, range: &Range<usize>) -> &str {
        self.text.get(range.clone()).unwrap_or(REPLACEMENT)
    }
}

fn read_u32(buffer: &[u8], at: usize) -> Option<usize> {
    let bytes = buffer.get(at..at.checked_add(4)?)?;
    let bytes: [u8; 4] = bytes.try_into().ok()?;
    usize::try_from(u32::from_le_bytes(bytes)).ok()
}

/// Serializes pairs the way the host does (for tests, and for bench/glue-profile's host).
pub fn serialize<'a>(pairs: impl IntoIterator<Item = (&'a [u8], &'a [u8])> + Clone) -> Vec<u8> {
    let count = pairs.clone().into_iter().count();
    let mut out = Vec::new();
    out.extend_from_slice(&u32::try_from(count).unwrap_or(u32::MAX).to_le_bytes());
    for (name, value) in pairs.clone() {
        out.extend_from_slice(&u32::try_from(name.len()).unwrap_or(u32::MAX).to_le_bytes());
        out.extend_from_slice(&u32::try_from(value.len()).unwrap_or(u32::MAX).to_le_bytes());
    }
    for (name, value) in pairs {
        out.extend_from_slice(name);
        out.push(0);
        out.extend_from_slice(value);
        out.push(0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderPairs {
        HeaderPairs::parse(serialize(
            pairs.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())),
        ))
    }

    #[test]
    fn reads_entries_in_order_with_repeats() {
        let headers = map(&[
            (":method", "GET"),
            (":path", "/mcp"),
            ("x-a", "1"),
            ("x-a", ""),
            ("authorization", "Bearer abc"),
        ]);
        assert_eq!(headers.get(":path"), Some("/mcp"));
        assert_eq!(headers.get("authorization"), Some("Bearer abc"));
        assert_eq!(headers.get_all("x-a").collect::<Vec<_>>(), ["1", ""]);
        assert_eq!(headers.get("x-b"), None);
        assert!(headers.contains(":method"));
        assert_eq!(headers.iter().count(), 5);
    }

    #[test]
    fn empty_and_garbage_buffers_give_no_entries() {
        for buffer in [
            vec![],
            vec![1],
            vec![0, 0, 0, 0],
            vec![0xff; 3],
            vec![0xff; 64],
        ] {
            assert_eq!(HeaderPairs::parse(buffer).iter().count(), 0);
        }
    }

    #[test]
    fn truncated_buffer_keeps_complete_entries() {
        let full = serialize([(&b"a"[..], &b"1"[..]), (&b"b"[..], &b"22"[..])]);
        for cut in 0..full.len() {
            let headers = HeaderPairs::parse(full.get(..cut).unwrap_or_default().to_vec());
            let seen: Vec<_> = headers.iter().collect();
            // Only whole entries, in order (the last one's closing NUL is not needed).
            let whole = [("a", "1"), ("b", "22")];
            assert_eq!(
                seen,
                whole.get(..seen.len()).unwrap_or_default(),
                "cut at {cut}"
            );
        }
        assert_eq!(HeaderPairs::parse(full).get("b"), Some("22"));
    }

    #[test]
    fn lengths_that_split_a_character_read_as_replacement() {
        // One entry whose name length (1) cuts "é" (2 bytes) in half.
        let mut buffer = 1u32.to_le_bytes().to_vec();
        buffer.extend_from_slice(&1u32.to_le_bytes());
        buffer.extend_from_slice(&1u32.to_le_bytes());
        buffer.extend_from_slice("é\0v\0".as_bytes());
        let headers = HeaderPairs::parse(buffer);
        let seen: Vec<_> = headers.iter().collect();
        assert!(seen.iter().all(|(n, _)| *n != "é"), "{seen:?}");
    }

    #[test]
    fn huge_count_does_not_allocate_or_panic() {
        let mut buffer = u32::MAX.to_le_bytes().to_vec();
        buffer.extend_from_slice(&[0; 16]);
        assert_eq!(HeaderPairs::parse(buffer).iter().count(), 0);
    }

    #[test]
    fn value_that_is_not_utf8_is_replaced_and_name_that_is_not_is_skipped() {
        let headers = HeaderPairs::parse(serialize([
            (&b"authorization"[..], &b"Bearer \xff\xfe"[..]),
            (&b"x-\xff"[..], &b"v"[..]),
            (&b"ok"[..], &b"yes"[..]),
        ]));
        assert_eq!(
            headers.get("authorization"),
            Some("Bearer \u{FFFD}\u{FFFD}")
        );
        assert_eq!(headers.get("ok"), Some("yes"));
        assert_eq!(headers.iter().count(), 2);
    }
}
