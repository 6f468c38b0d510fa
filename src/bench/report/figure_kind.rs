//! What a bench key measures, read off its name: the section it belongs to, the unit of
//! its value, which direction is better, and a short label for the table.

/// The bench's sections, in the order the table shows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Section {
    /// FUSE over a request queue, side by side with the peer.
    Fuse,
    /// The DAX window (our daemon only).
    Dax,
    /// virtio-pmem FLUSH.
    Pmem,
    /// The ledger alone, in process.
    Ledger,
    /// Many inodes: LOOKUPs without FORGET, descriptors and memory (ours and the peer).
    Scale,
}

impl Section {
    /// Every section, in table order.
    pub const ALL: [Section; 5] = [
        Section::Fuse,
        Section::Dax,
        Section::Pmem,
        Section::Ledger,
        Section::Scale,
    ];

    fn prefix(self) -> &'static str {
        match self {
            Section::Fuse => "fuse_",
            Section::Dax => "dax_",
            Section::Pmem => "pmem_",
            Section::Ledger => "ledger_",
            Section::Scale => "scale_",
        }
    }

    /// The section's heading in the table.
    pub fn title(self) -> &'static str {
        match self {
            Section::Fuse => {
                "FUSE over one request queue, one request in flight (qd16, qd64: that many, \
                 with --thread-pool-size 4)"
            }
            Section::Dax => "DAX window (vhost-dax only)",
            Section::Pmem => "virtio-pmem FLUSH",
            Section::Ledger => "DAX ledger, in process",
            Section::Scale => {
                "Many inodes: N LOOKUPs without FORGET, fresh daemon, \
                 --inode-file-handles=never | prefer; descriptors and RSS after"
            }
        }
    }
}

/// Which way a figure improves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Better {
    /// A rate: more is better.
    Higher,
    /// A latency or duration: less is better.
    Lower,
    /// A count that describes the run (requests sent, syncs issued).
    Neither,
}

/// A key, understood.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FigureKind {
    /// Its section (None: a key this build does not know).
    pub section: Option<Section>,
    /// Its unit, as printed.
    pub unit: &'static str,
    /// Which way is better.
    pub better: Better,
    /// The key without its section prefix and unit suffix.
    pub label: &'static str,
}

/// Suffixes in the order they are tried (the longest of overlapping ones first).
const UNITS: &[(&str, &str, Better)] = &[
    ("_ops_per_s", "ops/s", Better::Higher),
    ("_entries_per_s", "entries/s", Better::Higher),
    ("_per_s", "/s", Better::Higher),
    ("_gbps", "GB/s", Better::Higher),
    ("_us", "µs", Better::Lower),
    ("_ms", "ms", Better::Lower),
    ("_mib", "MiB", Better::Lower),
    ("_fds", "fds", Better::Lower),
    ("_known", "files", Better::Neither),
];

impl FigureKind {
    /// Reads `key`: `SECTION_LABEL_UNIT` (e.g. `fuse_lookup_p50_us`).
    pub fn of(key: &'static str) -> FigureKind {
        let section = Section::ALL
            .into_iter()
            .find(|s| key.starts_with(s.prefix()));
        let rest = section.map_or(key, |s| &key[s.prefix().len()..]);
        for &(suffix, unit, better) in UNITS {
            // `ledger_ops_per_s`: the unit is all there is after the section.
            let label = if rest == &suffix[1..] {
                Some("rate")
            } else {
                rest.strip_suffix(suffix)
            };
            if let Some(label) = label {
                return FigureKind {
                    section,
                    unit,
                    better,
                    label,
                };
            }
        }
        FigureKind {
            section,
            unit: "",
            better: Better::Neither,
            label: rest,
        }
    }
}

impl FigureKind {
    /// Where the figure's row goes in its section: by workload, the rate first, then
    /// its p50 and p99.
    pub fn row_order(&self) -> (&'static str, u8) {
        for (suffix, rank) in [("_p50", 1), ("_p99", 2)] {
            if let Some(base) = self.label.strip_suffix(suffix) {
                return (base, rank);
            }
        }
        (self.label, 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_read_as_section_unit_and_direction() {
        let k = FigureKind::of("fuse_lookup_p50_us");
        assert_eq!(
            (k.section, k.label, k.unit, k.better),
            (Some(Section::Fuse), "lookup_p50", "µs", Better::Lower)
        );
        let k = FigureKind::of("fuse_readdirplus_entries_per_s");
        assert_eq!((k.label, k.unit), ("readdirplus", "entries/s"));
        let k = FigureKind::of("dax_map_unmap_per_s");
        assert_eq!(
            (k.label, k.unit, k.better),
            ("map_unmap", "/s", Better::Higher)
        );
        let k = FigureKind::of("pmem_syncs_qd64");
        assert_eq!(
            (k.label, k.unit, k.better),
            ("syncs_qd64", "", Better::Neither)
        );
        let k = FigureKind::of("ledger_ops_per_s");
        assert_eq!(
            (k.section, k.label, k.unit),
            (Some(Section::Ledger), "rate", "ops/s")
        );
        assert_eq!(FigureKind::of("other_thing").section, None);
    }
}
