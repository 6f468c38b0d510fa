//! The client side of the control protocol, for a VMM embedding our frontend, the bench
//! and the tests: one JSON object per line each way, an answer for every request.

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

/// Why a control request did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The socket failed (or the daemon did not answer within the timeout).
    #[error("control socket: {0}")]
    Io(#[from] io::Error),
    /// The daemon answered with an error.
    #[error("control socket refused (errno {errno}): {message}")]
    Refused {
        /// Its errno.
        errno: i32,
        /// Its reason.
        message: String,
    },
    /// The answer was not what the protocol says.
    #[error("control socket answered {0:?}")]
    BadAnswer(String),
}

impl ClientError {
    /// The errno of a refusal.
    pub fn errno(&self) -> Option<i32> {
        match self {
            ClientError::Refused { errno, .. } => Some(*errno),
            _ => None,
        }
    }
}

/// A connection to a daemon's control socket. Pins taken on it are dropped when it closes.
pub struct ControlClient {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl ControlClient {
    /// Connects; every answer is waited for at most `timeout`.
    pub fn connect(path: &Path, timeout: Duration) -> Result<Self, ClientError> {
        let writer = UnixStream::connect(path)?;
        writer.set_read_timeout(Some(timeout))?;
        Ok(ControlClient {
            reader: BufReader::new(writer.try_clone()?),
            writer,
        })
    }

    /// Sends one request line and returns the answer object as it came, refusals
    /// included.
    pub fn request(&mut self, line: &str) -> Result<Value, ClientError> {
        writeln!(self.writer, "{line}")?;
        let mut answer = String::new();
        self.reader.read_line(&mut answer)?;
        serde_json::from_str(&answer).map_err(|_| ClientError::BadAnswer(answer))
    }

    /// Sends one request line and returns the answer, or the refusal it carries.
    pub fn call(&mut self, line: &str) -> Result<Value, ClientError> {
        let answer = self.request(line)?;
        let Some(message) = answer.get("error") else {
            return Ok(answer);
        };
        Err(ClientError::Refused {
            errno: answer["errno"]
                .as_i64()
                .and_then(|e| i32::try_from(e).ok())
                .ok_or_else(|| ClientError::BadAnswer(answer.to_string()))?,
            message: message.as_str().unwrap_or_default().to_string(),
        })
    }

    /// Pins window bytes `offset..offset+len` for `holder` (failing at once if a chunk is
    /// draining); returns the pin's id.
    pub fn pin(&mut self, offset: u64, len: u64, holder: &str) -> Result<u64, ClientError> {
        let request = serde_json::json!({
            "op": "pin", "offset": offset, "len": len, "holder": holder,
        });
        let answer = self.call(&request.to_string())?;
        answer["pin"]
            .as_u64()
            .ok_or_else(|| ClientError::BadAnswer(answer.to_string()))
    }

    /// Drops pin `id` (taken on this connection).
    pub fn unpin(&mut self, id: u64) -> Result<(), ClientError> {
        let answer = self.call(&format!(r#"{{"op":"unpin","pin":{id}}}"#))?;
        match answer.get("ok") {
            Some(Value::Bool(true)) => Ok(()),
            _ => Err(ClientError::BadAnswer(answer.to_string())),
        }
    }

    /// The ledger's counters and the window's usage.
    pub fn stats(&mut self) -> Result<Value, ClientError> {
        Ok(self.call(r#"{"op":"stats"}"#)?["stats"].clone())
    }
}
