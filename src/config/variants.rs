//! Sections whose keys depend on one field: a lock's or a door sensor's `driver`, a reader's
//! `kind`. A key that belongs to another variant is an unknown key
//! (`lock[0].topic: unknown key for driver "modbus"`), so a half-edited section cannot carry
//! settings that silently do nothing.

use super::checker::Checker;
use super::error::KeyPath;

/// The variants of a section and the keys each accepts besides those every variant has.
pub(super) struct Variants {
    /// The field that picks the variant, as it is written in the file.
    pub field: &'static str,
    /// What an unknown value is called in its error ("driver", "reader kind").
    pub called: &'static str,
    /// Each variant's name and its keys, in the order the error lists them.
    pub table: &'static [(&'static str, &'static [&'static str])],
}

impl Variants {
    /// Checks that `name` is one of the variants and that no key of `present` (each key and
    /// whether it is set) belongs only to others. `None` for an unknown variant; otherwise the
    /// variant and whether a foreign key was set (then the section is not valid, but its own
    /// keys are still checked, so that every problem is reported at once).
    pub(super) fn pick<'n>(
        &self,
        ck: &mut Checker<'_, '_>,
        key: &KeyPath,
        name: &'n str,
        present: &[(&str, bool)],
    ) -> Option<(&'n str, bool)> {
        let Some((_, allowed)) = self.table.iter().find(|(variant, _)| *variant == name) else {
            ck.report.error(
                &key.key(self.field),
                format!("unknown {} \"{name}\" ({})", self.called, self.choices()),
            );
            return None;
        };
        let mut foreign = false;
        for (other, _) in present
            .iter()
            .filter(|(other, set)| *set && !allowed.contains(other))
        {
            ck.report.error(
                &key.key(other),
                format!("unknown key for {} \"{name}\"", self.field),
            );
            foreign = true;
        }
        Some((name, foreign))
    }

    /// "a, b, c or d".
    fn choices(&self) -> String {
        let names: Vec<&str> = self.table.iter().map(|(name, _)| *name).collect();
        match names.split_last() {
            Some((last, [])) => (*last).to_owned(),
            Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
            None => String::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_choices_read_as_a_list() {
        let variants = |table| Variants {
            field: "driver",
            called: "driver",
            table,
        };
        assert_eq!(variants(&[("log", &[])]).choices(), "log");
        assert_eq!(
            variants(&[("mqtt", &[]), ("modbus", &[])]).choices(),
            "mqtt or modbus"
        );
        assert_eq!(
            variants(&[("a", &[]), ("b", &[]), ("c", &[])]).choices(),
            "a, b or c"
        );
    }
}
