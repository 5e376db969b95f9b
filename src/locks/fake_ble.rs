//! A Bluetooth backend for tests (compiled only for them): records writes, fails them on
//! demand, and can lose its adapter. The real driver, [`super::BluerBackend`], is the same
//! trait over bluer.

use std::sync::{Mutex, PoisonError};

use bluer::{Address, Uuid};

use super::BoxFuture;
use super::ble::{BleBackend, BleError};

/// One write a [`FakeBle`] received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FakeBleWrite {
    /// The device written to.
    pub device: Address,
    /// The characteristic written.
    pub characteristic: Uuid,
    /// The bytes.
    pub payload: Vec<u8>,
}

/// A backend for tests: records writes, or fails every write with a chosen error; its adapter
/// can be taken away.
#[derive(Default)]
pub(crate) struct FakeBle {
    writes: Mutex<Vec<FakeBleWrite>>,
    attempts: Mutex<usize>,
    failure: Mutex<Option<BleError>>,
    adapter_missing: std::sync::atomic::AtomicBool,
}

impl FakeBle {
    /// A fake whose writes succeed.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes every following write fail with `error` (`None`: succeed again).
    pub(crate) fn fail_with(&self, error: Option<BleError>) {
        *self.failure.lock().unwrap_or_else(PoisonError::into_inner) = error;
    }

    /// The successful writes so far, in order.
    pub fn writes(&self) -> Vec<FakeBleWrite> {
        self.writes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Takes the Bluetooth adapter away (`false`) or gives it back (`true`): what the health
    /// probe sees. Writes are not affected; use [`FakeBle::fail_with`] for those.
    pub(crate) fn set_adapter_present(&self, present: bool) {
        self.adapter_missing
            .store(!present, std::sync::atomic::Ordering::SeqCst);
    }

    /// How many writes were attempted, failed ones included.
    pub fn attempts(&self) -> usize {
        *self.attempts.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl BleBackend for FakeBle {
    fn adapter_present(&self) -> BoxFuture<'_, Result<(), BleError>> {
        let missing = self
            .adapter_missing
            .load(std::sync::atomic::Ordering::SeqCst);
        Box::pin(std::future::ready(if missing {
            Err(BleError::NotWritten(
                "no Bluetooth adapter: hci0 not found".into(),
            ))
        } else {
            Ok(())
        }))
    }

    fn write<'a>(
        &'a self,
        device: Address,
        characteristic: Uuid,
        payload: &'a [u8],
    ) -> BoxFuture<'a, Result<(), BleError>> {
        Box::pin(async move {
            *self.attempts.lock().unwrap_or_else(PoisonError::into_inner) += 1;
            if let Some(error) = self
                .failure
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone()
            {
                return Err(error);
            }
            self.writes
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(FakeBleWrite {
                    device,
                    characteristic,
                    payload: payload.to_vec(),
                });
            Ok(())
        })
    }
}
