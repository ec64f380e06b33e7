//! SPEC.md documents every instruction of the table, with the encoding the
//! table actually produces.

use tessera_isa::{Target, INSTRUCTIONS};

fn spec() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/SPEC.md")).expect("read SPEC.md")
}

#[test]
fn every_instruction_has_a_section_with_its_encoding() {
    let spec = spec();
    let mut missing = Vec::new();
    for info in INSTRUCTIONS {
        let heading = format!(
            "#### `{}`\nEncoding: `{}`\n",
            info.mnemonic,
            info.encoding_line()
        );
        if !spec.contains(&heading) {
            missing.push(format!(
                "{}\n  expected: {}",
                info.mnemonic,
                heading.replace('\n', "\n  ")
            ));
        }
    }
    assert!(
        missing.is_empty(),
        "SPEC.md is out of date for:\n{}",
        missing.join("\n")
    );
}

#[test]
fn spec_has_no_sections_for_instructions_that_do_not_exist() {
    let spec = spec();
    for line in spec.lines().filter(|l| l.starts_with("#### `")) {
        let mnemonic = line.trim_start_matches("#### `").trim_end_matches('`');
        assert!(
            INSTRUCTIONS.iter().any(|i| i.mnemonic == mnemonic),
            "SPEC.md documents `{mnemonic}`, which is not in the table"
        );
    }
}

/// The rows of the §11 target table: (field names, "allowed" column).
fn target_rows(spec: &str) -> Vec<(Vec<String>, String)> {
    let start = spec.find("## 11. Targets").expect("§11");
    let end = spec[start..]
        .find("## 12.")
        .map_or(spec.len(), |e| start + e);
    spec[start..end]
        .lines()
        .filter(|l| l.starts_with("| `"))
        .map(|row| {
            let cells: Vec<&str> = row.split('|').map(str::trim).collect();
            let fields = cells[1]
                .split('`')
                .skip(1)
                .step_by(2)
                .map(str::to_string)
                .collect();
            (fields, cells[3].to_string())
        })
        .collect()
}

#[test]
fn target_table_lists_every_parameter_and_where_zero_is_allowed() {
    let spec = spec();
    let rows = target_rows(&spec);
    let tiny = serde_json::to_value(Target::tiny()).expect("json");
    let fields: Vec<&String> = tiny.as_object().expect("object").keys().collect();
    for field in &fields {
        let Some((_, allowed)) = rows.iter().find(|(names, _)| names.contains(field)) else {
            panic!("SPEC.md §11 does not list target field `{field}`");
        };
        if field.as_str() == "name" || tiny[field.as_str()].is_boolean() {
            continue;
        }
        let mut zero = tiny.clone();
        zero[field.as_str()] = serde_json::json!(0);
        let target: Target = serde_json::from_value(zero).expect("target");
        assert_eq!(
            target.validate().is_ok(),
            allowed.starts_with("≥ 0"),
            "`{field}` = 0: SPEC.md says `{allowed}`"
        );
    }
    for (names, _) in &rows {
        for name in names {
            assert!(
                fields.contains(&name),
                "SPEC.md §11 lists `{name}`, which is not a target field"
            );
        }
    }
}
