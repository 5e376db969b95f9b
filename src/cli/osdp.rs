//! `portier osdp keyset --reader ID`: a new secure channel key for an OSDP reader in install
//! mode (see `readers::osdp::keyset`).

use std::time::Duration;

use super::output::out;
use super::{Failure, KeysetArgs};
use crate::config::{Config, ReaderSource};

/// Sets a new key on `args.reader` and keeps it in its `scbk_file`.
pub(super) fn keyset(config: &Config, args: &KeysetArgs) -> Result<(), Failure> {
    let Some(reader) = config.readers.iter().find(|r| r.id == args.reader) else {
        return Err(Failure::Usage(format!(
            "{} has no reader \"{}\"",
            config.path.display(),
            args.reader
        )));
    };
    let ReaderSource::Osdp(link) = &reader.source else {
        return Err(Failure::Usage(format!(
            "reader \"{}\" is a {} reader; keyset is for OSDP readers",
            reader.id,
            reader.kind()
        )));
    };
    let Some(file) = &link.scbk_file else {
        return Err(Failure::Usage(format!(
            "reader \"{}\" has no scbk_file: set one (like \"/etc/portier/{}.scbk\") where the \
             key is to be kept",
            reader.id, reader.id
        )));
    };
    let wait = humantime::parse_duration(&args.wait)
        .ok()
        .filter(|w| !w.is_zero() && *w <= Duration::from_secs(600))
        .ok_or_else(|| {
            Failure::Usage(format!(
                "--wait {}: not a duration from 1s to 10m, like 30s",
                args.wait
            ))
        })?;
    // The key is written as the daemon's user (the state directory's owner), so that the
    // daemon can read it and nobody else can.
    if let Some(foreign) = super::owner::foreign_owner(&config.site.state_dir) {
        return Err(foreign.refusal());
    }
    if super::owner::daemon_holds(&config.site.state_dir) {
        return Err(Failure::Runtime(
            "the daemon is running and holds the reader's serial port: stop it first \
             (systemctl stop portier), then start it again after the key is set"
                .to_owned(),
        ));
    }
    eprintln!(
        "setting a new key on reader \"{}\" (OSDP address {} on {}); it must be in install mode",
        reader.id,
        link.address,
        link.port.display()
    );
    crate::readers::osdp::keyset::keyset(&reader.id, link, file, wait)
        .map_err(|e| Failure::Runtime(e.to_string()))?;
    out!(
        "reader \"{}\" has a new secure channel key, kept in {}",
        reader.id,
        file.display()
    );
    Ok(())
}
