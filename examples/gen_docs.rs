//! Writes the manual page `portier.8` and the shell completions (bash, zsh, fish) generated from
//! the command line's clap definition into a folder, for the .deb (`scripts/build-deb`):
//!
//! ```sh
//! cargo run --example gen_docs -- target/assets
//! ```
//!
//! The output does not depend on the target architecture, so the host builds it for every .deb.

use std::io::Write;
use std::path::PathBuf;

use clap::CommandFactory;
use clap_complete::Shell;
use portier::cli::Cli;

/// Hand-written sections appended after clap's: what the options cannot say.
const EXTRA_SECTIONS: &str = r#".SH "EXIT STATUS"
.TP
\fB0\fR
success (\fBexplain\fR: granted)
.TP
\fB1\fR
runtime failure, e.g. Cobot unreachable, no snapshot yet, or the state directory belongs to another user (run the command as that user: \fBsudo \-u portier portier\fR ...); \fBstatus\fR: degraded
.TP
\fB2\fR
\fBexplain\fR: denied; \fBstatus\fR: failing
.TP
\fB3\fR
\fBstatus\fR: no daemon answers
.TP
\fB64\fR
usage error or invalid configuration (one line per error); the systemd unit does not restart on it
.SH FILES
.TP
\fI/etc/portier/portier.toml\fR
the configuration; the package installs a file without settings, which is refused until edited
.TP
\fI/usr/share/doc/portier/examples/portier.toml\fR
the documented example configuration
.TP
\fI/var/lib/portier\fR
the state directory (cache, outbox, tokens), owned by the \fBportier\fR user: \fBsync\fR, \fBmembers\fR, \fBexplain\fR, \fBcobot connect\fR and \fBrun\fR as another user refuse (exit 1) unless the running daemon answers for it; run them as \fBsudo \-u portier portier\fR ...
.SH ENVIRONMENT
.TP
\fBPORTIER_CONFIG\fR
the configuration file when \fB\-\-config\fR is not given
.TP
\fBRUST_LOG\fR
log filter, e.g. \fBdebug\fR or \fBportier=debug\fR
.TP
\fBCREDENTIALS_DIRECTORY\fR
set by systemd's \fBLoadCredential=\fR; bare file names in \fB*_file\fR keys are looked up there first
.SH "SEE ALSO"
\fBsystemctl\fR(1), \fBjournalctl\fR(1), /usr/share/doc/portier/README.md.gz
"#;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = PathBuf::from(
        std::env::args_os()
            .nth(1)
            .ok_or("usage: gen_docs OUTPUT_FOLDER")?,
    );
    std::fs::create_dir_all(out.join("completions"))?;

    let mut command = Cli::command().disable_help_subcommand(true);
    command.build();
    let mut page = Vec::new();
    clap_mangen::Man::new(command.clone())
        .section("8")
        .render(&mut page)?;
    page.write_all(EXTRA_SECTIONS.as_bytes())?;
    std::fs::write(out.join("portier.8"), page)?;
    write_subcommand_pages(&command, &out)?;

    for (shell, file) in [
        (Shell::Bash, "portier"),
        (Shell::Zsh, "_portier"),
        (Shell::Fish, "portier.fish"),
    ] {
        let mut script = Vec::new();
        clap_complete::generate(shell, &mut Cli::command(), "portier", &mut script);
        std::fs::write(out.join("completions").join(file), script)?;
    }
    Ok(())
}

/// `portier-run.8`, `portier-cobot-connect.8`, …: one page per subcommand, as the main page's
/// SUBCOMMANDS section refers to them (after `build()`, each display name is `portier-…`).
fn write_subcommand_pages(parent: &clap::Command, out: &std::path::Path) -> std::io::Result<()> {
    for sub in parent.get_subcommands().filter(|s| !s.is_hide_set()) {
        clap_mangen::Man::new(sub.clone())
            .section("8")
            .generate_to(out)?;
        write_subcommand_pages(sub, out)?;
    }
    Ok(())
}
