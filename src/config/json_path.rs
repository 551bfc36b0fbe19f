//! The field path (`issuers[0].remote_jwks.uri`) at the place a config parse error happened.
//!
//! `serde_json` reports where an error is (line and column) but not which field that is. A
//! path-tracking deserializer wrapper would tell, but it doubles the deserialization code of
//! every config struct (about 130 KB of the `.wasm`). The text before an error is well-formed
//! JSON as far as the parser got, so walking it once and keeping the open containers is enough.

/// One open container while walking the text.
enum Frame {
    /// An object: the key of the member being read, whether the next string is a key, and
    /// whether its key has been read but not yet its `:`.
    Object {
        key: Option<String>,
        want_key: bool,
        before_colon: bool,
    },
    /// An array: the index of the element being read, and whether that element has begun (an
    /// error right after `[` is about the array itself).
    Array { index: usize, begun: bool },
}

/// The path of the value a `serde_json` parse error of `json` is about.
pub fn path_of_error(json: &[u8], error: &serde_json::Error) -> String {
    path_at(json, error.line(), error.column(), &error.to_string())
}

/// The path at `line` / `column` (1-based line, column as `serde_json` counts it: the bytes of
/// the line consumed so far), in the form `a.b[2].c`; empty at the top level. `message` is the
/// error's: the position alone cannot tell every case apart.
fn path_at(json: &[u8], line: usize, column: usize, message: &str) -> String {
    let mut end = offset_of(json, line, column).min(json.len());
    if !message.starts_with("missing field") {
        end = before_closer_after_scalar(json, end);
    }
    let mut stack: Vec<Frame> = Vec::new();
    let mut i = 0;
    while let Some(&byte) = json.get(i) {
        if i >= end {
            break;
        }
        match byte {
            b'{' => {
                begin_element(&mut stack);
                stack.push(Frame::Object {
                    key: None,
                    want_key: true,
                    before_colon: false,
                });
            }
            b'[' => {
                begin_element(&mut stack);
                stack.push(Frame::Array {
                    index: 0,
                    begun: false,
                });
            }
            b'}' | b']' => {
                stack.pop();
            }
            b',' => match stack.last_mut() {
                Some(Frame::Object { key, want_key, .. }) => {
                    *key = None;
                    *want_key = true;
                }
                Some(Frame::Array { index, begun }) => {
                    *index += 1;
                    *begun = false;
                }
                None => {}
            },
            b'"' => {
                begin_element(&mut stack);
                let (text, next) = string_at(json, i + 1);
                if let Some(Frame::Object {
                    key,
                    want_key,
                    before_colon,
                }) = stack.last_mut()
                {
                    if *want_key {
                        *key = Some(text);
                        *want_key = false;
                        *before_colon = true;
                    }
                }
                i = next;
                continue;
            }
            b':' => {
                if let Some(Frame::Object { before_colon, .. }) = stack.last_mut() {
                    *before_colon = false;
                }
            }
            b' ' | b'\t' | b'\n' | b'\r' => {}
            _ => begin_element(&mut stack),
        }
        i += 1;
    }
    let just_closed = json
        .get(..end)
        .and_then(|read| read.iter().rev().find(|b| !b.is_ascii_whitespace()))
        == Some(&b'}');
    if message.starts_with("missing field") && !just_closed {
        // Reported at the end of the object, after its last member (or after its `}`, when the
        // path is already the object's): the object's own path.
        if let Some(Frame::Object { key, .. }) = stack.last_mut() {
            *key = None;
        }
    } else if message.starts_with("unknown variant")
        && matches!(
            stack.last(),
            Some(Frame::Object {
                before_colon: true,
                ..
            })
        )
    {
        // An enum written as `{"variant": …}`: the error is about the object, not a member.
        stack.pop();
    } else if value_not_yet_read(json.get(end..).unwrap_or_default(), message) {
        // The parser looked at the next value (an array element) and refused it unread.
        begin_element(&mut stack);
    }
    render(&stack)
}

/// Whether the error is about a container the parser refused without reading it: it reports
/// those before their `[` or `{`, while it reads a refused scalar first, and includes the byte
/// it stopped at in syntax errors. A container it began to read and then refused as a whole is
/// reported after its opening byte; only `[[…]]` refused as a whole stays ambiguous, and gets
/// the first element's path.
fn value_not_yet_read(rest: &[u8], message: &str) -> bool {
    let next = rest.iter().find(|b| !b.is_ascii_whitespace());
    (message.starts_with("invalid type: sequence") && next == Some(&b'['))
        || (message.starts_with("invalid type: map") && next == Some(&b'{'))
}

/// An error raised after a member's value was read (a `deserialize_with` check) is placed
/// after the container's closing byte when that member was the last one: the parser closes
/// the container before it reports. Such an error is about the member, so the closing byte is
/// left out; a container closing another one is kept (that error is about the outer one).
fn before_closer_after_scalar(json: &[u8], end: usize) -> usize {
    let last_non_space = |upto: usize| {
        json.get(..upto)
            .and_then(|read| read.iter().rposition(|b| !b.is_ascii_whitespace()))
    };
    let Some(closer) = last_non_space(end) else {
        return end;
    };
    if !matches!(json.get(closer), Some(b'}' | b']')) {
        return end;
    }
    match last_non_space(closer).and_then(|i| json.get(i)) {
        Some(b'}' | b']') | None => end,
        Some(_) => closer,
    }
}

/// Notes that the innermost array's current element has begun.
fn begin_element(stack: &mut [Frame]) {
    if let Some(Frame::Array { begun, .. }) = stack.last_mut() {
        *begun = true;
    }
}

/// The byte offset of a `serde_json` position: column counts bytes after the line's start.
fn offset_of(json: &[u8], line: usize, column: usize) -> usize {
    let mut start = 0;
    for _ in 1..line {
        match json
            .get(start..)
            .and_then(|rest| rest.iter().position(|&b| b == b'\n'))
        {
            Some(newline) => start += newline + 1,
            None => return json.len(),
        }
    }
    start + column
}

/// The string starting after an opening quote at `from` (escapes kept as written, which only
/// matters for keys that contain them) and the offset after its closing quote.
fn string_at(json: &[u8], from: usize) -> (String, usize) {
    let mut i = from;
    while let Some(&byte) = json.get(i) {
        match byte {
            b'\\' => i += 2,
            b'"' => {
                let text = json.get(from..i).unwrap_or_default();
                return (String::from_utf8_lossy(text).into_owned(), i + 1);
            }
            _ => i += 1,
        }
    }
    let text = json.get(from..).unwrap_or_default();
    (String::from_utf8_lossy(text).into_owned(), json.len())
}

fn render(stack: &[Frame]) -> String {
    let mut path = String::new();
    for frame in stack {
        match frame {
            Frame::Object { key: Some(key), .. } => {
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
            }
            Frame::Object { key: None, .. } => {}
            Frame::Array { index, begun } => {
                if *begun {
                    path.push_str(&format!("[{index}]"));
                }
            }
        }
    }
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at_end(json: &str) -> String {
        let line = json.lines().count().max(1);
        let column = json.lines().last().map_or(0, str::len);
        path_at(json.as_bytes(), line, column, "")
    }

    #[test]
    fn nested_members_and_elements() {
        assert_eq!(at_end(r#"{"a": {"b": [1, {"c": "#), "a.b[1].c");
        assert_eq!(at_end(r#"{"a": 1, "b": [[0, 1], [2"#), "b[1][0]");
        assert_eq!(at_end(r#"{"a": {"x": 1}, "b""#), "b");
        assert_eq!(at_end("{\n  \"a\": [\n    1,\n    2"), "a[1]");
    }

    #[test]
    fn an_object_end_is_the_object_path() {
        let json = br#"{"a": [{"x": 1, "y": 2}"#;
        assert_eq!(path_at(json, 1, 22, "missing field `z`"), "a[0]");
        assert_eq!(path_at(json, 1, 22, ""), "a[0].y");
        assert_eq!(path_at(br#"{"a": {"#, 1, 7, "missing field `z`"), "a");
    }

    #[test]
    fn right_after_an_opening_bracket_is_the_container_itself() {
        assert_eq!(at_end(r#"{"a": ["#), "a");
        assert_eq!(at_end(r#"{"a": [[1], ["#), "a[1]");
        assert_eq!(at_end(r#"{"a": [[1], [ 2"#), "a[1][0]");
        assert_eq!(at_end(r#"{"a": [1, "#), "a");
    }

    #[test]
    fn a_refused_unread_element_is_the_element() {
        let json = br#"{"a": [[1]], "b": [{"z": 1}], "c": [7]}"#;
        // Consumed up to the first `[` of each array, or through the refused scalar.
        assert_eq!(
            path_at(json, 1, 7, "invalid type: sequence, expected a string"),
            "a[0]"
        );
        assert_eq!(
            path_at(json, 1, 7, "invalid type: sequence, expected u64"),
            "a[0]"
        );
        assert_eq!(
            path_at(json, 1, 19, "invalid type: map, expected a string"),
            "b[0]"
        );
        assert_eq!(
            path_at(json, 1, 19, "invalid type: sequence, expected u64"),
            "b"
        );
        assert_eq!(
            path_at(json, 1, 37, "invalid type: integer `7`, expected a string"),
            "c[0]"
        );
    }

    #[test]
    fn a_check_after_the_last_member_is_about_that_member() {
        let json = br#"{"a": {"x": 1, "t": 1500.5}, "b": [{"c": {}}]}"#;
        // The parser closed `a` before reporting the check on `t`.
        assert_eq!(path_at(json, 1, 27, "expected a whole number"), "a.t");
        assert_eq!(path_at(json, 1, 26, "expected a whole number"), "a.t");
        // A closer after a closer stays: the error is about the outer container.
        assert_eq!(path_at(json, 1, 44, "invalid length 1"), "b[0]");
    }

    #[test]
    fn closed_containers_leave_the_path() {
        assert_eq!(at_end(r#"{"a": {"b": 1}, "#), "");
        assert_eq!(at_end(r#"{"a": [1, 2], "c": {}"#), "c");
    }

    #[test]
    fn strings_with_brackets_commas_and_escapes_are_skipped() {
        assert_eq!(at_end(r#"{"a": "x,]}\"[{", "b": ["#), "b");
        assert_eq!(at_end(r#"{"k\"q": 1"#), "k\\\"q");
    }

    #[test]
    fn positions_past_the_end_or_on_later_lines_are_bounded() {
        assert_eq!(path_at(br#"{"a": [1"#, 1, 999, ""), "a[0]");
        assert_eq!(path_at(br#"{"a": 1"#, 7, 3, ""), "a");
        assert_eq!(path_at(b"", 1, 0, ""), "");
        assert_eq!(path_at(br#"{"a": "unterminated"#, 1, 40, ""), "a");
    }
}
