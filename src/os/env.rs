//! The environment, read without allocating: `MMPOOL_*` options are
//! looked up by walking `environ` (no `getenv` locale, no `std::env`).
//!
//! Uses: nothing of this crate.

extern "C" {
    static environ: *const *const core::ffi::c_char;
}

/// The value of environment variable `name` (the bytes after `name=`),
/// found by walking `environ`.
pub(crate) fn value(name: &[u8]) -> Option<&'static [u8]> {
    // SAFETY: `environ` is a NULL-terminated array of NUL-terminated
    // strings, valid for the life of the process unless the program
    // changes it (setenv), which options are read before.
    unsafe {
        let mut e = environ;
        if e.is_null() {
            return None;
        }
        while !(*e).is_null() {
            let entry = core::ffi::CStr::from_ptr(*e).to_bytes();
            if entry.len() > name.len() && entry.starts_with(name) && entry[name.len()] == b'=' {
                return Some(&entry[name.len() + 1..]);
            }
            e = e.add(1);
        }
    }
    None
}

/// Is the variable set to something other than empty, `0`, `no`, `false`?
pub(crate) fn flag(name: &[u8]) -> bool {
    matches!(value(name), Some(v) if !v.is_empty() && v != b"0" && v != b"no" && v != b"false")
}

/// The variable as a decimal number, if it is one.
pub(crate) fn number(name: &[u8]) -> Option<usize> {
    value(name).and_then(parse_usize)
}

/// Parse a decimal number (at most 18 digits, so it cannot overflow).
pub(crate) fn parse_usize(v: &[u8]) -> Option<usize> {
    if v.is_empty() || v.len() > 18 {
        return None;
    }
    v.iter().try_fold(0usize, |acc, &c| {
        c.is_ascii_digit().then(|| acc * 10 + (c - b'0') as usize)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_parse_and_garbage_does_not() {
        assert_eq!(parse_usize(b"0"), Some(0));
        assert_eq!(parse_usize(b"12345"), Some(12345));
        assert_eq!(parse_usize(b""), None);
        assert_eq!(parse_usize(b"12a"), None);
        assert_eq!(parse_usize(b"1234567890123456789"), None);
    }

    #[test]
    fn reads_the_environment_without_allocating() {
        // PATH is set for every test run.
        assert!(value(b"PATH").is_some_and(|v| !v.is_empty()));
        assert!(value(b"MMPOOL_SURELY_UNSET_VARIABLE").is_none());
        assert!(!flag(b"MMPOOL_SURELY_UNSET_VARIABLE"));
    }
}
