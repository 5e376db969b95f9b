//! The serial port of an OSDP bus as libosdp's channel: non-blocking, opened by path and
//! opened again when it fails or vanishes.
//!
//! libosdp calls the channel from its refresh and expects it never to block: a read with no
//! bytes waiting says "would block". When the device errors (a USB RS-485 adapter pulled out)
//! the port is closed, and opened again by path (a `/dev/serial/by-id/...` symlink is followed
//! at each open) at most every [`REOPEN`](crate::readers::device::REOPEN) until it is back.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use libosdp::{Channel, ChannelError};

use crate::readers::device::REOPEN;

/// Why the port is not open, shared with the panel for the reader's status.
pub(crate) type PortProblem = Arc<Mutex<Option<String>>>;

/// A serial port as an OSDP channel.
pub(crate) struct SerialChannel {
    path: PathBuf,
    baud: u32,
    port: Option<Box<dyn tokio_serial::SerialPort>>,
    next_open: Instant,
    problem: PortProblem,
}

impl SerialChannel {
    /// A channel on `path` at `baud`, opened at its first use.
    pub(crate) fn new(path: PathBuf, baud: u32, problem: PortProblem) -> Self {
        Self {
            path,
            baud,
            port: None,
            next_open: crate::clock::instant(),
            problem,
        }
    }

    /// The open port, opening it when it is time to try.
    fn port(&mut self) -> Option<&mut Box<dyn tokio_serial::SerialPort>> {
        if self.port.is_none() && crate::clock::instant() >= self.next_open {
            // A zero timeout: a read with nothing waiting returns at once.
            match tokio_serial::new(self.path.to_string_lossy(), self.baud)
                .timeout(Duration::ZERO)
                .open()
            {
                Ok(port) => {
                    tracing::info!(port = %self.path.display(), "OSDP serial port opened");
                    self.port = Some(port);
                    self.set_problem(None);
                }
                Err(e) => {
                    self.next_open = crate::clock::instant() + REOPEN;
                    self.set_problem(Some(format!("cannot open {}: {e}", self.path.display())));
                }
            }
        }
        self.port.as_mut()
    }

    /// The port failed: closed, to be opened again.
    fn lost(&mut self, e: &std::io::Error) {
        tracing::warn!(port = %self.path.display(), error = %e,
            "OSDP serial port failed; opening it again");
        self.port = None;
        self.next_open = crate::clock::instant() + REOPEN;
        self.set_problem(Some(format!("{} failed: {e}", self.path.display())));
    }

    fn set_problem(&self, problem: Option<String>) {
        let mut shared = self.problem.lock().unwrap_or_else(PoisonError::into_inner);
        if *shared != problem {
            *shared = problem;
        }
    }
}

/// Whether an I/O error only means "nothing now".
fn nothing_now(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::TimedOut
            | std::io::ErrorKind::WouldBlock
            | std::io::ErrorKind::Interrupted
    )
}

impl Channel for SerialChannel {
    fn get_id(&self) -> i32 {
        // One channel per control panel.
        0
    }

    fn read(&mut self, buf: &mut [u8]) -> Result<usize, ChannelError> {
        let Some(port) = self.port() else {
            return Err(ChannelError::WouldBlock);
        };
        match port.read(buf) {
            Ok(n) => Ok(n),
            Err(e) if nothing_now(&e) => Err(ChannelError::WouldBlock),
            Err(e) => {
                self.lost(&e);
                Err(ChannelError::WouldBlock)
            }
        }
    }

    fn write(&mut self, buf: &[u8]) -> Result<usize, ChannelError> {
        let Some(port) = self.port() else {
            return Err(ChannelError::TransportError);
        };
        match port.write(buf) {
            Ok(n) => Ok(n),
            Err(e) if nothing_now(&e) => Err(ChannelError::WouldBlock),
            Err(e) => {
                self.lost(&e);
                Err(ChannelError::TransportError)
            }
        }
    }

    fn flush(&mut self) -> Result<(), ChannelError> {
        match self.port.as_mut().map(|port| port.flush()) {
            None | Some(Ok(())) => Ok(()),
            Some(Err(e)) if nothing_now(&e) => Ok(()),
            Some(Err(e)) => {
                self.lost(&e);
                Err(ChannelError::TransportError)
            }
        }
    }

    fn close(&mut self) -> Result<(), ChannelError> {
        self.port = None;
        Ok(())
    }
}
