//! Schema `pattern`s, compiled once per process: compiling a regex costs far more than
//! matching it, and every write of an object checks its patterns. The compiled regex is shared,
//! not cloned: a clone of a `regex::Regex` starts with an empty pool of search caches, so every
//! match through a fresh clone builds its lazy DFA states again (under `ringrift bench fleet`
//! that made schema validation a quarter of the API server's time).

use std::sync::Arc;

type Compiled = Result<Arc<regex::Regex>, regex::Error>;

/// Most distinct patterns kept compiled; schemas hold a few dozen.
const PATTERNS_KEPT: usize = 1024;

/// The compiled `pattern` (or why it does not compile), from the cache when it was seen before.
pub(crate) fn compiled(pattern: &str) -> Compiled {
    static CACHE: std::sync::OnceLock<std::sync::Mutex<std::collections::HashMap<String, Compiled>>> =
        std::sync::OnceLock::new();
    let cache = CACHE.get_or_init(std::sync::Mutex::default);
    if let Ok(map) = cache.lock()
        && let Some(re) = map.get(pattern)
    {
        return re.clone();
    }
    let re = regex::Regex::new(pattern).map(Arc::new);
    if let Ok(mut map) = cache.lock() {
        if map.len() >= PATTERNS_KEPT {
            map.clear();
        }
        map.insert(pattern.to_owned(), re.clone());
    }
    re
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_compile_once_and_errors_are_kept_too() {
        let first = compiled("^[a-z]+$").unwrap();
        assert!(first.is_match("abc") && !first.is_match("ABC"));
        let again = compiled("^[a-z]+$").unwrap();
        assert!(again.is_match("xyz"), "from the cache");
        assert!(Arc::ptr_eq(&first, &again), "shared, with its warm search caches");
        assert!(compiled("(unclosed").is_err());
        assert!(compiled("(unclosed").is_err(), "an invalid pattern stays invalid");
    }
}
