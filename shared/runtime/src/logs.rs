//! The bounded log of one service: replica stdout/stderr lines and supervisor events, oldest first.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

use crate::supervisor::lock;

/// Longest log line kept.
const MAX_LOG_LINE: usize = 4096;

/// Log lines of a service (all replicas and supervisor events), bounded.
pub(crate) struct Logs {
    lines: Mutex<VecDeque<String>>,
    cap: usize,
}

// === impl Logs ===

impl Logs {
    pub fn new(cap: usize) -> Self {
        Logs {
            lines: Mutex::new(VecDeque::new()),
            cap,
        }
    }

    pub fn push(&self, line: String) {
        let mut line = line;
        if line.len() > MAX_LOG_LINE {
            let mut cut = MAX_LOG_LINE;
            while !line.is_char_boundary(cut) {
                cut -= 1;
            }
            line.truncate(cut);
        }
        let mut lines = lock(&self.lines);
        if lines.len() >= self.cap {
            lines.pop_front();
        }
        lines.push_back(line);
    }

    pub fn tail(&self, n: usize) -> Vec<String> {
        let lines = lock(&self.lines);
        lines
            .iter()
            .skip(lines.len().saturating_sub(n))
            .cloned()
            .collect()
    }
}

/// Copies the lines of a child's output into `logs`, prefixed with `[label]`.
pub(crate) async fn pump(reader: impl AsyncRead + Unpin, logs: Arc<Logs>, label: String) {
    let mut lines = BufReader::new(reader).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        logs.push(format!("[{label}] {line}"));
    }
}
