//! Task logs: the process writes to a file (so it keeps logging while the agent restarts); the
//! agent reads what is new, keeps a bounded tail in memory and fans lines out to followers.

use std::collections::VecDeque;
use std::io::{Read as _, Seek as _, SeekFrom};
use std::path::Path;
use std::sync::Mutex;

use tokio::sync::broadcast;

/// Longest line kept; longer lines are cut (the file has them whole).
pub const MAX_LINE: usize = 16 * 1024;

/// The newest lines of a task's log, bounded by count and bytes.
#[derive(Debug)]
pub struct LogTail {
    inner: Mutex<Tail>,
    follow: broadcast::Sender<String>,
    max_lines: usize,
    max_bytes: usize,
}

#[derive(Debug, Default)]
struct Tail {
    lines: VecDeque<String>,
    bytes: usize,
    trimmed: bool,
}

impl LogTail {
    /// A tail of at most `max_lines` lines and `max_bytes` bytes.
    pub fn new(max_lines: usize, max_bytes: usize) -> Self {
        Self {
            inner: Mutex::new(Tail::default()),
            follow: broadcast::channel(1024).0,
            max_lines: max_lines.max(1),
            max_bytes: max_bytes.max(1),
        }
    }

    /// Adds a line.
    pub fn push(&self, mut line: String) {
        if line.len() > MAX_LINE {
            let mut cut = MAX_LINE;
            while !line.is_char_boundary(cut) {
                cut -= 1;
            }
            line.truncate(cut);
        }
        let _ = self.follow.send(line.clone());
        let Ok(mut tail) = self.inner.lock() else { return };
        tail.bytes += line.len();
        tail.lines.push_back(line);
        while tail.lines.len() > self.max_lines || (tail.bytes > self.max_bytes && tail.lines.len() > 1) {
            if let Some(old) = tail.lines.pop_front() {
                tail.bytes -= old.len();
                tail.trimmed = true;
            }
        }
    }

    /// The newest `n` lines.
    pub fn tail(&self, n: usize) -> Vec<String> {
        let Ok(tail) = self.inner.lock() else {
            return Vec::new();
        };
        let skip = tail.lines.len().saturating_sub(n);
        tail.lines.iter().skip(skip).cloned().collect()
    }

    /// Whether older lines were dropped from memory (the file still has them).
    pub fn trimmed(&self) -> bool {
        self.inner.lock().is_ok_and(|t| t.trimmed)
    }

    /// New lines from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<String> {
        self.follow.subscribe()
    }
}

/// Reads a growing log file line by line, remembering where it stopped.
#[derive(Debug, Default)]
pub struct LogReader {
    offset: u64,
    partial: Vec<u8>,
    behind: bool,
}

/// Most bytes read per call, so one chatty process cannot stall the agent.
const READ_CHUNK: u64 = 4 * 1024 * 1024;

impl LogReader {
    /// Whether the last read reached the end of the file (reads take at most 4 MiB).
    pub fn caught_up(&self) -> bool {
        !self.behind
    }

    /// The complete lines added since the last call. With `flush`, a last line without a
    /// newline is returned too once the end is reached (the process has ended).
    ///
    /// # Errors
    /// When the file cannot be read (a missing file is no lines).
    pub fn read_new(&mut self, path: &Path, flush: bool) -> std::io::Result<Vec<String>> {
        let mut file = match std::fs::File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let len = file.metadata()?.len();
        if len < self.offset {
            // Truncated: start over.
            self.offset = 0;
            self.partial.clear();
        }
        file.seek(SeekFrom::Start(self.offset))?;
        let mut buf = Vec::new();
        file.take(READ_CHUNK).read_to_end(&mut buf)?;
        self.offset += buf.len() as u64;
        self.behind = self.offset < len;
        self.partial.extend_from_slice(&buf);
        let mut lines = Vec::new();
        while let Some(pos) = self.partial.iter().position(|b| *b == b'\n') {
            let rest = self.partial.split_off(pos + 1);
            let mut line = std::mem::replace(&mut self.partial, rest);
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            lines.push(String::from_utf8_lossy(&line).into_owned());
        }
        if self.partial.len() > MAX_LINE * 4 || (flush && !self.behind && !self.partial.is_empty()) {
            lines.push(String::from_utf8_lossy(&std::mem::take(&mut self.partial)).into_owned());
        }
        Ok(lines)
    }
}

/// The last `n` lines of a log file (for finished tasks no longer in memory), reading at most
/// the last 1 MiB.
///
/// # Errors
/// When the file cannot be read.
pub fn file_tail(path: &Path, n: usize) -> std::io::Result<Vec<String>> {
    let mut file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    let start = len.saturating_sub(1024 * 1024);
    file.seek(SeekFrom::Start(start))?;
    let mut buf = Vec::new();
    file.read_to_end(&mut buf)?;
    let text = String::from_utf8_lossy(&buf);
    let mut lines: Vec<&str> = text.lines().collect();
    if start > 0 && !lines.is_empty() {
        lines.remove(0);
    }
    let skip = lines.len().saturating_sub(n);
    Ok(lines[skip..].iter().map(|s| (*s).to_owned()).collect())
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    #[test]
    fn the_tail_is_bounded_by_lines_and_bytes() {
        let tail = LogTail::new(3, 1000);
        for i in 0..5 {
            tail.push(format!("line {i}"));
        }
        assert_eq!(tail.tail(10), vec!["line 2", "line 3", "line 4"]);
        assert!(tail.trimmed());
        assert!(!LogTail::new(3, 1000).trimmed());
        assert_eq!(tail.tail(1), vec!["line 4"]);
        let small = LogTail::new(100, 10);
        small.push("aaaaaa".into());
        small.push("bbbbbb".into());
        assert_eq!(small.tail(10), vec!["bbbbbb"]);
        let cut = LogTail::new(2, usize::MAX);
        cut.push("é".repeat(MAX_LINE));
        assert!(cut.tail(1)[0].len() <= MAX_LINE);
    }

    #[tokio::test]
    async fn followers_get_new_lines() {
        let tail = LogTail::new(10, 1000);
        let mut rx = tail.subscribe();
        tail.push("hello".into());
        assert_eq!(rx.recv().await.unwrap(), "hello");
    }

    #[test]
    fn big_logs_are_read_in_chunks_without_losing_lines() {
        let dir = std::env::temp_dir().join(format!("logreader-big-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("log");
        let line = "x".repeat(1023);
        let count = 5 * 1024; // 5 MiB: more than one read
        std::fs::write(&path, format!("{line}\n").repeat(count)).unwrap();
        let mut reader = LogReader::default();
        let first = reader.read_new(&path, true).unwrap();
        assert!(!reader.caught_up());
        assert_eq!(first.len(), 4 * 1024);
        let rest = reader.read_new(&path, true).unwrap();
        assert!(reader.caught_up());
        assert_eq!(first.len() + rest.len(), count);
        assert!(rest.iter().all(|l| *l == line));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_reader_returns_complete_lines_only_until_flushed() {
        let dir = std::env::temp_dir().join(format!("logreader-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("log");
        let mut reader = LogReader::default();
        assert!(reader.read_new(&path, false).unwrap().is_empty());
        let mut f = std::fs::File::create(&path).unwrap();
        write!(f, "one\ntwo\r\nthr").unwrap();
        assert_eq!(reader.read_new(&path, false).unwrap(), vec!["one", "two"]);
        write!(f, "ee\nfour").unwrap();
        assert_eq!(reader.read_new(&path, false).unwrap(), vec!["three"]);
        assert_eq!(reader.read_new(&path, true).unwrap(), vec!["four"]);
        assert_eq!(file_tail(&path, 2).unwrap(), vec!["three", "four"]);
        assert!(reader.caught_up());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
