//! A job listing as the server packs it (`StatTable`): checked once, then read in place.
//!
//! Why: `qstat` of 5,000 jobs spent most of its time allocating a string per value and an
//! object per job. The default listing prints straight from the reply's buffers through
//! [`Row`]; the listings that print every attribute build [`Object`]s with
//! [`Table::into_objects`].

use std::sync::Arc;

use capstan_proto::v1 as pb;

use capstan_proto::text::same_text;

use super::{kind_from_wire, AttrView, Attribute, Kind, Object};

/// A reply whose offsets do not describe its own buffers: a server bug, reported rather than
/// trusted (slicing with them could panic).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed job table from the server: {0}")]
pub struct MalformedTable(&'static str);

/// One attribute of the listing: its name and resource, shared by every row that has it.
#[derive(Debug, Clone)]
struct Column {
    name: Arc<str>,
    resource: Arc<str>,
    kind: Kind,
}

/// A checked `StatTable`. Row `r` is named `names[name_ends[r-1]..name_ends[r]]` and holds
/// cells `row_ends[r-1]..row_ends[r]`; cell `c` is `columns[cell_columns[c]]` with the value
/// `values[value_ends[c-1]..value_ends[c]]` (each range starting at 0 for the first).
#[derive(Debug, Clone, Default)]
pub struct Table {
    columns: Vec<Column>,
    names: String,
    name_ends: Vec<u32>,
    row_ends: Vec<u32>,
    cell_columns: Vec<u32>,
    values: String,
    value_ends: Vec<u32>,
}

impl TryFrom<pb::StatTable> for Table {
    type Error = MalformedTable;

    fn try_from(t: pb::StatTable) -> Result<Self, MalformedTable> {
        check_ends(&t.name_ends, &t.names).map_err(|()| MalformedTable("row names"))?;
        check_ends(&t.value_ends, &t.values).map_err(|()| MalformedTable("values"))?;
        if t.row_ends.len() != t.name_ends.len() {
            return Err(MalformedTable("rows without names"));
        }
        if t.value_ends.len() != t.cell_columns.len() {
            return Err(MalformedTable("cells without values"));
        }
        let ordered = t.row_ends.windows(2).all(|w| w[0] <= w[1]);
        if !ordered || t.row_ends.last().map_or(0, |&e| e as usize) != t.cell_columns.len() {
            return Err(MalformedTable("row cells"));
        }
        if t.cell_columns
            .iter()
            .any(|&c| c as usize >= t.columns.len())
        {
            return Err(MalformedTable("a cell's column"));
        }
        Ok(Table {
            columns: t
                .columns
                .into_iter()
                .map(|c| Column {
                    kind: kind_from_wire(c.kind),
                    name: c.name.into(),
                    resource: c.resource.into(),
                })
                .collect(),
            names: t.names,
            name_ends: t.name_ends,
            row_ends: t.row_ends,
            cell_columns: t.cell_columns,
            values: t.values,
            value_ends: t.value_ends,
        })
    }
}

/// Whether `ends` cut `text` into consecutive slices: non-decreasing, within it, and on
/// character boundaries.
fn check_ends(ends: &[u32], text: &str) -> Result<(), ()> {
    let mut previous = 0;
    for &end in ends {
        let end = end as usize;
        if end < previous || !text.is_char_boundary(end) {
            return Err(());
        }
        previous = end;
    }
    Ok(())
}

/// The `i`th of the consecutive slices of `text` that `ends` describe (checked on arrival).
fn nth_slice<'t>(text: &'t str, ends: &[u32], i: usize) -> &'t str {
    let start = if i == 0 { 0 } else { ends[i - 1] as usize };
    &text[start..ends[i] as usize]
}

impl Table {
    /// The rows in the server's order.
    pub fn rows(&self) -> impl ExactSizeIterator<Item = Row<'_>> {
        (0..self.name_ends.len()).map(|index| Row { table: self, index })
    }

    /// Every row as an [`Object`], its attributes sharing their column's name.
    pub fn into_objects(self) -> Vec<Object> {
        self.rows()
            .map(|row| Object {
                name: row.name().to_string(),
                attrs: row
                    .cells()
                    .map(|(column, value)| Attribute {
                        name: Arc::clone(&column.name),
                        resource: Arc::clone(&column.resource),
                        value: value.to_string(),
                        kind: column.kind,
                    })
                    .collect(),
            })
            .collect()
    }
}

/// One row of a [`Table`], borrowing its name and values.
#[derive(Debug, Clone, Copy)]
pub struct Row<'t> {
    table: &'t Table,
    index: usize,
}

impl<'t> Row<'t> {
    /// Each attribute of the row, in the object's order, with its value.
    fn cells(&self) -> impl Iterator<Item = (&'t Column, &'t str)> + 't {
        let table = self.table;
        let start = match self.index {
            0 => 0,
            i => table.row_ends[i - 1] as usize,
        };
        (start..table.row_ends[self.index] as usize).map(move |c| {
            (
                &table.columns[table.cell_columns[c] as usize],
                nth_slice(&table.values, &table.value_ends, c),
            )
        })
    }
}

impl AttrView for Row<'_> {
    fn name(&self) -> &str {
        nth_slice(&self.table.names, &self.table.name_ends, self.index)
    }

    fn get_res(&self, name: &str, resource: &str) -> Option<&str> {
        self.cells()
            .find(|(c, _)| *c.name == *name && same_text(&c.resource, resource))
            .map(|(_, value)| value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn column(name: &str, resource: &str, kind: pb::AttrKind) -> pb::Attr {
        pb::Attr {
            name: name.into(),
            resource: resource.into(),
            value: String::new(),
            kind: kind as i32,
        }
    }

    /// Two jobs: `1.vm` with Job_Name, cput and qtime; `2.vm` with Job_Name alone.
    fn two_jobs() -> pb::StatTable {
        pb::StatTable {
            columns: vec![
                column("Job_Name", "", pb::AttrKind::Text),
                column("qtime", "", pb::AttrKind::Time),
                column("resources_used", "cput", pb::AttrKind::Text),
            ],
            names: "1.vm2.vm".into(),
            name_ends: vec![4, 8],
            row_ends: vec![3, 4],
            cell_columns: vec![0, 2, 1, 0],
            values: "a00:00:017b".into(),
            value_ends: vec![1, 9, 10, 11],
        }
    }

    #[test]
    fn rows_read_values_in_place() {
        let table = Table::try_from(two_jobs()).unwrap();
        let rows: Vec<Row<'_>> = table.rows().collect();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].name(), "1.vm");
        assert_eq!(rows[0].get("Job_Name"), Some("a"));
        assert_eq!(rows[0].get_res("resources_used", "cput"), Some("00:00:01"));
        assert_eq!(rows[0].get("resources_used"), None);
        assert_eq!(rows[1].name(), "2.vm");
        assert_eq!(rows[1].get("Job_Name"), Some("b"));
        assert_eq!(rows[1].get("qtime"), None);
    }

    #[test]
    fn rows_become_objects_with_shared_names() {
        let objects = Table::try_from(two_jobs()).unwrap().into_objects();
        assert_eq!(objects.len(), 2);
        assert_eq!(objects[0].name, "1.vm");
        assert_eq!(
            objects[0].attrs,
            [
                Attribute::text("Job_Name", "a"),
                Attribute::res("resources_used", "cput", "00:00:01"),
                Attribute::time("qtime", 7),
            ]
        );
        assert_eq!(objects[1].attrs, [Attribute::text("Job_Name", "b")]);
        assert!(Arc::ptr_eq(
            &objects[0].attrs[0].name,
            &objects[1].attrs[0].name
        ));
    }

    #[test]
    fn the_default_listing_prints_rows_as_it_prints_objects() {
        // Every column the default listing prints, some cells missing.
        let rows: [(&str, &[(u32, &str)]); 2] = [
            (
                "1.vm",
                &[
                    (0, "a"),
                    (1, "alice@vm"),
                    (2, "batch@vm"),
                    (3, "R"),
                    (4, "00:00:01"),
                ],
            ),
            ("2.vm", &[(0, "b"), (1, "bob@vm"), (3, "Q")]),
        ];
        let mut wire = pb::StatTable {
            columns: vec![
                column("Job_Name", "", pb::AttrKind::Text),
                column("Job_Owner", "", pb::AttrKind::Text),
                column("queue", "", pb::AttrKind::Text),
                column("job_state", "", pb::AttrKind::Text),
                column("resources_used", "cput", pb::AttrKind::Text),
            ],
            ..Default::default()
        };
        for (name, cells) in rows {
            wire.names.push_str(name);
            wire.name_ends.push(wire.names.len() as u32);
            for (column, value) in cells {
                wire.cell_columns.push(*column);
                wire.values.push_str(value);
                wire.value_ends.push(wire.values.len() as u32);
            }
            wire.row_ends.push(wire.cell_columns.len() as u32);
        }
        let table = Table::try_from(wire).unwrap();
        let from_rows =
            crate::format::jobs::default_listing(&table.rows().collect::<Vec<_>>(), true);
        let from_objects = crate::format::jobs::default_listing(&table.into_objects(), true);
        assert_eq!(from_rows, from_objects);
        for printed in ["1.vm", "alice", "bob", "batch", "00:00:01", " Q "] {
            assert!(from_rows.contains(printed), "{printed:?} in {from_rows}");
        }
        assert!(!from_rows.contains("alice@vm"), "{from_rows}");
    }

    #[test]
    fn offsets_that_do_not_fit_the_buffers_are_refused() {
        let broken = |change: fn(&mut pb::StatTable)| {
            let mut t = two_jobs();
            change(&mut t);
            Table::try_from(t).unwrap_err()
        };
        assert_eq!(broken(|t| t.value_ends[3] = 99).0, "values");
        assert_eq!(broken(|t| t.value_ends[1] = 0).0, "values");
        assert_eq!(broken(|t| t.name_ends.push(8)).0, "rows without names");
        assert_eq!(broken(|t| t.cell_columns[0] = 3).0, "a cell's column");
        assert_eq!(broken(|t| t.cell_columns.push(0)).0, "cells without values");
        assert_eq!(broken(|t| t.row_ends[1] = 5).0, "row cells");
        assert_eq!(broken(|t| t.row_ends = vec![4, 3]).0, "row cells");
        // An offset inside a multi-byte character.
        assert_eq!(
            broken(|t| {
                t.names = "1.vé".into();
                t.name_ends = vec![4, 5];
            })
            .0,
            "row names"
        );
        let empty = Table::try_from(pb::StatTable::default()).unwrap();
        assert_eq!(empty.rows().len(), 0);
    }
}
