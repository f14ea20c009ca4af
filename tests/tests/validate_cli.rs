//! `sluice validate`: every problem, each naming its field and what was expected.

use std::process::Command;

use sluice_tests::{repo_root, sluice_bin};

fn validate(args: &[&str], files: &[&std::path::Path]) -> (i32, String) {
    let out = Command::new(sluice_bin())
        .arg("validate")
        .args(args)
        .args(files)
        .output()
        .expect("run validate");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn three_mistakes_give_three_errors_and_a_failure_exit() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pipeline = dir.path().join("bad.yaml");
    std::fs::write(
        &pipeline,
        "name: orders\nconnector: datagen\ntasks: two\nconfig:\n  topic: orders\n  count: -5\n  colour: blue\n",
    )
    .expect("write");
    // Three mistakes: tasks is not an integer, an unknown `colour`, count below 0.
    let (code, stdout) = validate(&[], &[&pipeline]);
    assert_eq!(code, 1, "{stdout}");
    let lines: Vec<&str> = stdout.lines().collect();
    let file = pipeline.display().to_string();
    assert_eq!(
        lines,
        [
            format!("{file}: tasks: expected an integer, got string \"two\""),
            format!(
                "{file}: config.colour: unknown field; expected one of: topic, count, rate, batch_size"
            ),
            format!("{file}: config.count: expected at least 0, got -5"),
        ]
    );
}

#[test]
fn three_different_mistakes_in_json_output() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pipeline = dir.path().join("bad.yaml");
    std::fs::write(
        &pipeline,
        "name: files\nconnector: file-sink\nconfig:\n  topics: []\n  file: /tmp/x\n  format: xml\nvalue_converter: {type: avro}\n",
    )
    .expect("write");
    let (code, stdout) = validate(&["--output", "json"], &[&pipeline]);
    assert_eq!(code, 1);
    let report: serde_json::Value = serde_json::from_str(&stdout).expect("json output");
    assert_eq!(report["valid"], false);
    let errors = report["files"][0]["errors"].as_array().expect("errors");
    let fields: Vec<&str> = errors
        .iter()
        .map(|e| e["field"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        fields,
        ["value_converter.type", "config.topics", "config.format"]
    );
    assert_eq!(
        errors[0]["message"],
        "expected one of json, string, bytes, got \"avro\""
    );
    assert_eq!(errors[1]["message"], "expected a non-empty value");
    assert_eq!(
        errors[2]["message"],
        "expected one of value, record, got \"xml\""
    );
}

#[test]
fn shipped_configs_are_valid() {
    let root = repo_root();
    let worker = root.join("configs/worker.yaml");
    let pipelines: Vec<_> = std::fs::read_dir(root.join("configs/pipelines"))
        .expect("configs/pipelines")
        .map(|e| e.expect("entry").path())
        .collect();
    assert!(!pipelines.is_empty());
    let mut files = vec![worker.as_path()];
    files.extend(pipelines.iter().map(|p| p.as_path()));
    let (code, stdout) = validate(&[], &files);
    assert_eq!(code, 0, "{stdout}");
    assert_eq!(
        stdout
            .lines()
            .filter(|l| l.ends_with("ok (worker file)") || l.ends_with("ok (pipeline file)"))
            .count(),
        files.len()
    );
}

#[test]
fn yaml_syntax_errors_carry_line_and_column() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pipeline = dir.path().join("broken.yaml");
    std::fs::write(
        &pipeline,
        "name: a\nconnector: datagen\nconfig: {topic: [x\n",
    )
    .expect("write");
    let (code, stdout) = validate(&[], &[&pipeline]);
    assert_eq!(code, 1);
    assert!(stdout.contains("invalid YAML at line"), "{stdout}");
}
