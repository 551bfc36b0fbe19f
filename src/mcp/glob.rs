//! Glob patterns for tool, prompt and resource names: `*` matches any run of characters, `?`
//! one character, everything else itself. Iterative, so no input can make it recurse deeply.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob(Vec<char>);

impl Glob {
    pub fn new(pattern: &str) -> Result<Glob, String> {
        if pattern.is_empty() || pattern.len() > 512 || pattern.chars().any(char::is_control) {
            return Err("a pattern is 1-512 printable characters".into());
        }
        Ok(Glob(pattern.chars().collect()))
    }

    pub fn matches(&self, text: &str) -> bool {
        let text: Vec<char> = text.chars().collect();
        let pattern = &self.0;
        let (mut p, mut t) = (0usize, 0usize);
        let mut star: Option<(usize, usize)> = None;
        while t < text.len() {
            match pattern.get(p) {
                Some('*') => {
                    star = Some((p, t));
                    p += 1;
                }
                Some(c) if *c == '?' || Some(c) == text.get(t) => {
                    p += 1;
                    t += 1;
                }
                _ => match star {
                    Some((sp, st)) => {
                        p = sp + 1;
                        t = st + 1;
                        star = Some((sp, st + 1));
                    }
                    None => return false,
                },
            }
        }
        pattern
            .get(p..)
            .is_some_and(|rest| rest.iter().all(|c| *c == '*'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stars_and_questions() {
        let g = |p: &str, t: &str| Glob::new(p).unwrap().matches(t);
        assert!(g("delete_*", "delete_file"));
        assert!(!g("delete_*", "undelete_file"));
        assert!(g("*", ""));
        assert!(g("a?c", "abc"));
        assert!(!g("a?c", "ac"));
        assert!(g("file:///*/secret/*", "file:///home/secret/key"));
        assert!(g("*a*b*", "xxaxxbxx"));
        assert!(!g("*a*b", "xxaxxbxxc"));
        assert!(g("echo", "echo"));
        assert!(!g("echo", "echo2"));
    }

    #[test]
    fn long_inputs_stay_cheap() {
        let text = "a".repeat(10_000);
        assert!(!Glob::new("*a*a*a*a*b").unwrap().matches(&text));
    }
}
