//! `template.yaml` is valid, and is what the store expects.

use std::process::Command;

use replicache_dynamodb::store::dynamo::VERSION_INDEX;

fn template_path() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../template.yaml")
}

#[test]
fn template_passes_cfn_lint() {
    let out = Command::new("cfn-lint")
        .arg(template_path())
        .output()
        .expect(
            "cfn-lint must be installed (pip install cfn-lint; the README's test command does)",
        );
    assert!(
        out.status.success(),
        "cfn-lint found problems:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn the_test_table_is_created_from_the_template() {
    let store = integration_tests::dynamodb_local::fresh_table().await;
    let tables = store
        .client()
        .list_tables()
        .send()
        .await
        .expect("list tables");
    let name = tables.table_names().last().expect("a table").clone();
    let table = store
        .client()
        .describe_table()
        .table_name(name)
        .send()
        .await
        .expect("describe table");
    let table = table.table().expect("table");
    let indexes: Vec<&str> = table
        .local_secondary_indexes()
        .iter()
        .filter_map(|i| i.index_name())
        .collect();
    assert_eq!(indexes, [VERSION_INDEX]);
    let keys: Vec<&str> = table
        .key_schema()
        .iter()
        .map(|k| k.attribute_name())
        .collect();
    assert_eq!(keys, ["pk", "sk"]);
}
