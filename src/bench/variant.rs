//! What the bridge is asked to do in one run: its envelope, structure, delivery mode, lease and
//! replication.
//!
//! Every feature the matrix prices ([`super::matrix`]) is one entry of [`Variant::ALL`], built from
//! [`Variant::RAW`] with the settings that differ; the bridge's config ([`super::bridge`]) and the
//! variant's own push-only ceiling ([`super::ceiling`]) both follow from it. A new way of writing
//! is a field here with its default in `RAW` (as `stream` is), one entry in `ALL`, and its line in
//! the bridge's config.

use super::bad_input;

/// How the Redis the run writes to replicates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replication {
    /// A Redis of its own, no replica.
    None,
    /// A master with one replica, pushes not waiting for it: what the WAIT guard is set against.
    Replica,
    /// The same master and replica, every push followed by `WAIT 1` (`redis.wait_replicas = 1`).
    WaitGuard,
}

/// One way to run the bridge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Variant {
    /// The name the matrix prints and `--variants` takes.
    pub name: &'static str,
    /// The envelope (`raw`, `legacy`, `json`, or a job framework's).
    pub envelope: &'static str,
    /// Entries of a stream (`structure = "stream"`) rather than elements of a list; the symfony
    /// envelope writes a stream always.
    pub stream: bool,
    pub exactly_once: bool,
    /// Exclusive mode: the lease held, every push fenced.
    pub lease: bool,
    pub replication: Replication,
    /// What the matrix divides this variant's rate by, run in the same pair.
    pub baseline: &'static str,
}

impl Variant {
    /// Raw at-least-once: the baseline every other variant is set against.
    pub const RAW: Variant = Variant {
        name: "raw",
        envelope: "raw",
        stream: false,
        exactly_once: false,
        lease: false,
        replication: Replication::None,
        baseline: "raw",
    };

    const fn envelope(name: &'static str) -> Variant {
        Variant {
            name,
            envelope: name,
            ..Variant::RAW
        }
    }

    /// Every variant, in the order a pair runs them (raw first; the replica's two runs side by side).
    pub const ALL: [Variant; 16] = [
        Variant::RAW,
        Variant::envelope("legacy"),
        Variant::envelope("json"),
        Variant::envelope("laravel"),
        Variant::envelope("celery"),
        Variant::envelope("sidekiq"),
        Variant::envelope("bullmq"),
        Variant::envelope("rq"),
        // Streams, set against raw lists: what an entry costs over a list element.
        Variant {
            name: "stream",
            stream: true,
            ..Variant::RAW
        },
        Variant {
            name: "symfony",
            envelope: "symfony",
            stream: true,
            ..Variant::RAW
        },
        Variant {
            name: "lease",
            lease: true,
            ..Variant::RAW
        },
        // The old conf.json's path: it always runs the legacy envelope under the lease.
        Variant {
            name: "legacy+lease",
            envelope: "legacy",
            lease: true,
            ..Variant::RAW
        },
        Variant {
            name: "exactly-once",
            exactly_once: true,
            ..Variant::RAW
        },
        Variant {
            name: "exactly-once+lease",
            exactly_once: true,
            lease: true,
            ..Variant::RAW
        },
        Variant {
            name: "replica",
            replication: Replication::Replica,
            ..Variant::RAW
        },
        Variant {
            name: "wait-guard",
            replication: Replication::WaitGuard,
            baseline: "replica",
            ..Variant::RAW
        },
    ];

    /// What `--variants` takes.
    pub fn names() -> clap::builder::PossibleValuesParser {
        clap::builder::PossibleValuesParser::new(Variant::ALL.map(|v| v.name))
    }

    /// The variants named in `names` (in [`Variant::ALL`]'s order), each with its baseline.
    pub fn chosen(names: &[String]) -> anyhow::Result<Vec<Variant>> {
        if names.is_empty() {
            return Ok(Variant::ALL.to_vec());
        }
        for name in names {
            if !Variant::ALL.iter().any(|v| v.name == name) {
                bad_input!(
                    "--variants: unknown variant {name:?} (known: {})",
                    Variant::ALL.map(|v| v.name).join(", ")
                );
            }
        }
        Ok(Variant::ALL
            .into_iter()
            .filter(|v| {
                names.iter().any(|n| n == v.name)
                    || Variant::ALL
                        .iter()
                        .any(|w| w.baseline == v.name && names.iter().any(|n| n == w.name))
                    || v.name == "raw"
            })
            .collect())
    }

    /// The bridge's `delivery` setting.
    pub fn delivery(&self) -> &'static str {
        if self.exactly_once {
            "exactly-once"
        } else {
            "at-least-once"
        }
    }

    /// How many replicas the bridge's pushes wait for.
    pub fn wait_replicas(&self) -> u32 {
        u32::from(self.replication == Replication::WaitGuard)
    }

    /// Whether the run needs the master and replica pair.
    pub fn replicated(&self) -> bool {
        self.replication != Replication::None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chosen_variant_brings_raw_and_its_baseline() {
        let names = |v: Vec<Variant>| v.iter().map(|v| v.name).collect::<Vec<_>>();
        assert_eq!(
            names(Variant::chosen(&["wait-guard".into()]).unwrap()),
            ["raw", "replica", "wait-guard"]
        );
        assert_eq!(
            names(Variant::chosen(&["json".into(), "lease".into()]).unwrap()),
            ["raw", "json", "lease"]
        );
        assert_eq!(Variant::chosen(&[]).unwrap().len(), Variant::ALL.len());
        assert_eq!(
            names(Variant::chosen(&["symfony".into()]).unwrap()),
            ["raw", "symfony"]
        );
        assert!(Variant::chosen(&["streams".into()]).is_err());
    }

    #[test]
    fn names_are_unique_and_baselines_exist() {
        for v in Variant::ALL {
            assert_eq!(Variant::ALL.iter().filter(|w| w.name == v.name).count(), 1);
            assert!(Variant::ALL.iter().any(|w| w.name == v.baseline));
        }
    }
}
