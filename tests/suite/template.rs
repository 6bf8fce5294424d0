//! `template.yaml` is valid, and is what the store expects.

use std::process::Command;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, LocalSecondaryIndex, Projection,
    ProjectionType, ScalarAttributeType,
};
use aws_sdk_dynamodb::Client;

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
async fn the_stores_create_table_matches_the_template() {
    use replicache_dynamodb::store::dynamo::DynamoStore;
    let client = integration_tests::dynamodb_local::client().await;
    let from_template = format!("t-{:016x}", fastrand::u64(..));
    create_table_from_template(&client, &from_template).await;
    let from_code = DynamoStore::new(client.clone(), format!("c-{:016x}", fastrand::u64(..)));
    from_code.create_table().await.expect("create table");
    from_code
        .create_table()
        .await
        .expect("creating it again is a no-op");
    let describe = |name: String| {
        let client = client.clone();
        async move {
            let t = client
                .describe_table()
                .table_name(name)
                .send()
                .await
                .expect("describe");
            let t = t.table().expect("table").clone();
            let mut attributes: Vec<String> = t
                .attribute_definitions()
                .iter()
                .map(|a| format!("{}:{}", a.attribute_name(), a.attribute_type().as_str()))
                .collect();
            attributes.sort();
            let keys = |k: &[aws_sdk_dynamodb::types::KeySchemaElement]| -> Vec<String> {
                k.iter()
                    .map(|k| format!("{}:{}", k.attribute_name(), k.key_type().as_str()))
                    .collect()
            };
            let indexes: Vec<(String, Vec<String>, String)> = t
                .local_secondary_indexes()
                .iter()
                .map(|i| {
                    (
                        i.index_name().unwrap_or_default().to_owned(),
                        keys(i.key_schema()),
                        format!("{:?}", i.projection().and_then(|p| p.projection_type())),
                    )
                })
                .collect();
            (attributes, keys(t.key_schema()), indexes)
        }
    };
    assert_eq!(
        describe(from_template).await,
        describe(from_code.table().to_owned()).await
    );
}

fn template() -> serde_yaml::Value {
    let text = std::fs::read_to_string(template_path()).expect("template.yaml");
    serde_yaml::from_str(&text).expect("YAML")
}

/// Every action a function's inline policies allow, with its resource as written (SAM's
/// policy templates are in [`policy_templates`]).
fn actions(t: &serde_yaml::Value, function: &str) -> Vec<String> {
    let mut found = Vec::new();
    for policy in t["Resources"][function]["Properties"]["Policies"]
        .as_sequence()
        .unwrap()
    {
        let Some(statements) = policy["Statement"].as_sequence() else {
            continue;
        };
        for statement in statements {
            for action in statement["Action"].as_sequence().unwrap() {
                found.push(action.as_str().unwrap().to_owned());
            }
        }
    }
    found.sort();
    found
}

/// The SAM policy templates a function's policies name (those without a `Statement`), each
/// with the queue it names (`QueueName: !GetAtt <queue>.QueueName`).
fn policy_templates(t: &serde_yaml::Value, function: &str) -> Vec<(String, String)> {
    let mut found = Vec::new();
    for policy in t["Resources"][function]["Properties"]["Policies"]
        .as_sequence()
        .unwrap()
    {
        if policy["Statement"].is_sequence() {
            continue;
        }
        for (name, args) in policy.as_mapping().expect("a policy template is a mapping") {
            let queue = &args["QueueName"]["Fn::GetAtt"];
            assert_eq!(queue[1], "QueueName", "{name:?}: {args:?}");
            found.push((
                name.as_str().unwrap().to_owned(),
                queue[0].as_str().unwrap().to_owned(),
            ));
        }
    }
    found
}

/// A function's setting: its own, else the one of Globals.
fn function_setting<'a>(
    t: &'a serde_yaml::Value,
    function: &str,
    setting: &str,
) -> &'a serde_yaml::Value {
    let own = &t["Resources"][function]["Properties"][setting];
    if own.is_null() {
        &t["Globals"]["Function"][setting]
    } else {
        own
    }
}

/// The queued path on AWS: a high-throughput FIFO queue of pushes with a FIFO dead-letter
/// queue watched by an alarm, the committer fed by an event source mapping that reports
/// partial batch failures (so that a space's pushes keep their order), and SQS rights by
/// need only: the push function may send, the committer may receive and delete, and no
/// function has SAM's SQS event (its managed policy reaches every queue of the account).
#[test]
fn the_push_queue_its_committer_and_least_privilege() {
    let t = template();
    let r = &t["Resources"];
    let path = &t["Parameters"]["PushPath"];
    assert_eq!(
        serde_yaml::to_string(&path["AllowedValues"]).unwrap(),
        "- direct\n- queued\n- auto\n"
    );
    assert_eq!(path["Default"], "auto");

    let queue = &r["PushQueue"];
    assert_eq!(queue["Type"], "AWS::SQS::Queue");
    let q = &queue["Properties"];
    assert_eq!(q["FifoQueue"], true);
    assert_eq!(q["DeduplicationScope"], "messageGroup");
    assert_eq!(q["FifoThroughputLimit"], "perMessageGroupId");
    assert_eq!(q["SqsManagedSseEnabled"], true);
    assert_eq!(
        q["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0],
        "PushDeadLetterQueue"
    );
    assert_eq!(q["RedrivePolicy"]["maxReceiveCount"], 10);
    let dlq = &r["PushDeadLetterQueue"]["Properties"];
    assert_eq!(
        dlq["FifoQueue"], true,
        "a FIFO queue's dead letters go to a FIFO queue"
    );
    assert_eq!(dlq["MessageRetentionPeriod"], 14 * 24 * 60 * 60);
    assert_eq!(dlq["SqsManagedSseEnabled"], true);

    let timeout = function_setting(&t, "CommitFunction", "Timeout")
        .as_u64()
        .expect("the committer's Timeout");
    let visibility = q["VisibilityTimeout"].as_u64().expect("VisibilityTimeout");
    assert!(
        visibility >= 6 * timeout,
        "Lambda advises a visibility timeout of 6 times the function's: {visibility} < 6 × {timeout}"
    );
    assert_eq!(
        r["CommitFunction"]["Metadata"]["BuildProperties"]["Binary"],
        "commit"
    );

    let mappings: Vec<&serde_yaml::Value> = r
        .as_mapping()
        .unwrap()
        .values()
        .filter(|v| v["Type"] == "AWS::Lambda::EventSourceMapping")
        .map(|v| &v["Properties"])
        .collect();
    assert_eq!(mappings.len(), 1, "one mapping: the push queue's");
    let mapping = mappings[0];
    assert_eq!(mapping["EventSourceArn"]["Fn::GetAtt"][0], "PushQueue");
    assert_eq!(mapping["FunctionName"]["Ref"], "CommitFunction");
    let batch = mapping["BatchSize"].as_u64().unwrap_or(10);
    assert!(
        (1..=10).contains(&batch),
        "a FIFO batch holds 1 to 10: {batch}"
    );
    assert_eq!(
        serde_yaml::to_string(&mapping["FunctionResponseTypes"]).unwrap(),
        "- ReportBatchItemFailures\n",
        "without it, one failed push would send its whole batch back"
    );
    assert!(mapping["MaximumBatchingWindowInSeconds"].is_null());
    for (name, resource) in r.as_mapping().unwrap() {
        if let Some(events) = resource["Properties"]["Events"].as_mapping() {
            for event in events.values() {
                assert_ne!(event["Type"], "SQS", "{name:?} has SAM's SQS event");
            }
        }
        assert!(
            resource["Properties"]["ManagedPolicyArns"].is_null()
                && resource["Properties"]["Role"].is_null(),
            "{name:?}: no managed policies nor roles of its own"
        );
    }

    let push_env = &r["PushFunction"]["Properties"]["Environment"]["Variables"];
    assert_eq!(push_env["PUSH_PATH"]["Ref"], "PushPath");
    assert_eq!(push_env["PUSH_QUEUE_URL"]["Ref"], "PushQueue");
    assert_eq!(
        policy_templates(&t, "PushFunction"),
        [("SQSSendMessagePolicy".to_owned(), "PushQueue".to_owned())],
        "the push function only sends to the queue"
    );
    assert_eq!(
        policy_templates(&t, "CommitFunction"),
        [("SQSPollerPolicy".to_owned(), "PushQueue".to_owned())],
        "the committer receives, returns and deletes, and never sends"
    );
    for function in [
        "PushFunction",
        "PullFunction",
        "PokeFunction",
        "CommitFunction",
    ] {
        let sqs: Vec<String> = actions(&t, function)
            .into_iter()
            .filter(|a| a.starts_with("sqs:"))
            .collect();
        assert!(sqs.is_empty(), "{function}: inline SQS rights {sqs:?}");
    }
    for function in ["PullFunction", "PokeFunction"] {
        assert!(policy_templates(&t, function).is_empty(), "{function}");
    }
    assert_eq!(
        actions(&t, "CommitFunction"),
        actions(&t, "PushFunction"),
        "the committer commits and pokes as the push function does"
    );
    let commit = &r["CommitFunction"]["Properties"];
    assert_eq!(
        serde_yaml::to_string(&commit["Policies"][1]).unwrap(),
        serde_yaml::to_string(&r["PushFunction"]["Properties"]["Policies"][1]).unwrap(),
        "on the same table and connections"
    );
    let commit_env = &commit["Environment"]["Variables"];
    assert_eq!(commit_env["POKE_ENDPOINT"], push_env["POKE_ENDPOINT"]);
    assert!(commit_env["PUSH_QUEUE_URL"].is_null(), "it never sends");

    let alarm = r
        .as_mapping()
        .unwrap()
        .values()
        .map(|v| &v["Properties"])
        .find(|p| p["Dimensions"][0]["Value"]["Fn::GetAtt"][0] == "PushDeadLetterQueue")
        .expect("an alarm on the dead-letter queue");
    assert_eq!(alarm["Namespace"], "AWS/SQS");
    assert_eq!(alarm["MetricName"], "ApproximateNumberOfMessagesVisible");
    assert_eq!(alarm["Threshold"], 0);
    assert_eq!(alarm["ComparisonOperator"], "GreaterThanThreshold");

    for output in [
        "PushQueueUrl",
        "PushDeadLetterQueueUrl",
        "CommitFunctionName",
    ] {
        assert!(t["Outputs"][output].is_mapping(), "output {output}");
    }
}

/// Pokes on AWS: a WebSocket API routed to the poke function, a keep-alive that costs no
/// invocation, and each function allowed only what it calls.
#[test]
fn the_poke_websocket_api_and_least_privilege() {
    let t = template();
    let r = &t["Resources"];
    assert_eq!(r["PokeApi"]["Properties"]["ProtocolType"], "WEBSOCKET");
    let route = |name: &str| {
        r[name]["Properties"]["RouteKey"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(route("PokeConnectRoute"), "$connect");
    assert_eq!(route("PokeDisconnectRoute"), "$disconnect");
    assert_eq!(route("PokeKeepAliveRoute"), "ping");
    assert_eq!(
        r["PokeKeepAliveIntegration"]["Properties"]["IntegrationType"],
        "MOCK"
    );
    assert_eq!(
        r["PokeConnectionsIntegration"]["Properties"]["IntegrationType"],
        "AWS_PROXY"
    );
    assert!(
        r["PokeTicketKey"]["Properties"]["GenerateSecretString"].is_mapping(),
        "the stack generates the key"
    );

    assert_eq!(
        actions(&t, "PushFunction"),
        [
            "dynamodb:BatchGetItem",
            "dynamodb:ConditionCheckItem",
            "dynamodb:PutItem",
            "dynamodb:Query",
            "execute-api:ManageConnections"
        ]
    );
    assert_eq!(
        actions(&t, "PullFunction"),
        ["dynamodb:BatchGetItem", "dynamodb:Query"]
    );
    assert_eq!(
        actions(&t, "PokeFunction"),
        [
            "dynamodb:BatchGetItem",
            "dynamodb:ConditionCheckItem",
            "dynamodb:PutItem"
        ]
    );
    let manage = serde_yaml::to_string(&r["PushFunction"]["Properties"]["Policies"]).unwrap();
    for method in ["POST", "DELETE"] {
        assert!(
            manage.contains(&format!(
                "${{PokeApi}}/${{PokeStage}}/{method}/@connections/*"
            )),
            "ManageConnections {method} only on this API's stage: {manage}"
        );
    }
    for output in ["PokeURL", "PokeTicketURL", "PushURL", "PullURL"] {
        assert!(t["Outputs"][output].is_mapping(), "output {output}");
    }
}

/// Operations: JSON logs with a retention, and alarms on errors, throttles and 5xx.
#[test]
fn logs_and_alarms() {
    let t = template();
    let r = &t["Resources"];
    assert_eq!(
        t["Globals"]["Function"]["LoggingConfig"]["LogFormat"],
        "JSON"
    );
    for f in ["Push", "Pull", "Poke", "Commit"] {
        let group = &r[format!("{f}LogGroup")]["Properties"];
        assert_eq!(group["RetentionInDays"]["Ref"], "LogRetentionDays", "{f}");
        let logging = &r[format!("{f}Function")]["Properties"]["LoggingConfig"];
        assert_eq!(logging["LogGroup"]["Ref"], format!("{f}LogGroup"));
    }
    let metric = |alarm: &str| {
        r[alarm]["Properties"]["MetricName"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(metric("PushErrorsAlarm"), "Errors");
    assert_eq!(metric("CommitErrorsAlarm"), "Errors");
    assert_eq!(metric("PullThrottlesAlarm"), "Throttles");
    assert_eq!(metric("Api5xxAlarm"), "5xx");
}

/// Creates a table named `name` as `template.yaml` declares it, to compare with the one the
/// store creates (which every test uses).
async fn create_table_from_template(client: &Client, name: &str) {
    let template = template();
    let table = &template["Resources"]["SyncTable"]["Properties"];
    let key_schema = |v: &serde_yaml::Value| -> Vec<KeySchemaElement> {
        v.as_sequence()
            .expect("KeySchema is a list")
            .iter()
            .map(|k| {
                KeySchemaElement::builder()
                    .attribute_name(k["AttributeName"].as_str().expect("AttributeName"))
                    .key_type(KeyType::from(k["KeyType"].as_str().expect("KeyType")))
                    .build()
                    .expect("key schema element")
            })
            .collect()
    };
    let attributes = table["AttributeDefinitions"]
        .as_sequence()
        .expect("AttributeDefinitions")
        .iter()
        .map(|a| {
            AttributeDefinition::builder()
                .attribute_name(a["AttributeName"].as_str().expect("AttributeName"))
                .attribute_type(ScalarAttributeType::from(
                    a["AttributeType"].as_str().expect("AttributeType"),
                ))
                .build()
                .expect("attribute definition")
        })
        .collect();
    let indexes = table["LocalSecondaryIndexes"].as_sequence().map(|seq| {
        seq.iter()
            .map(|i| {
                LocalSecondaryIndex::builder()
                    .index_name(i["IndexName"].as_str().expect("IndexName"))
                    .set_key_schema(Some(key_schema(&i["KeySchema"])))
                    .projection(
                        Projection::builder()
                            .projection_type(ProjectionType::from(
                                i["Projection"]["ProjectionType"]
                                    .as_str()
                                    .expect("ProjectionType"),
                            ))
                            .build(),
                    )
                    .build()
                    .expect("local secondary index")
            })
            .collect()
    });
    assert_eq!(table["BillingMode"].as_str(), Some("PAY_PER_REQUEST"));
    client
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest)
        .set_attribute_definitions(Some(attributes))
        .set_key_schema(Some(key_schema(&table["KeySchema"])))
        .set_local_secondary_indexes(indexes)
        .send()
        .await
        .expect("create table in DynamoDB Local");
}
