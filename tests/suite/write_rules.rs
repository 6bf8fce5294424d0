//! Write rules run inside the push, with the mutation's own `Tx`: two users claiming the same
//! unclaimed space at once leave exactly one owner, whose writes land while the other's are
//! refused, on both stores, with the rule in Rust and in JavaScript.

use std::sync::Arc;

use integration_tests::app;
use integration_tests::client::{caller, mutation, pull_ok, push_request, puts};
use replicache_dynamodb::engine::{Engine, EngineConfig};
use replicache_dynamodb::js::JsApp;
use replicache_dynamodb::protocol::Reply;
use replicache_dynamodb::{reject, App, MutationRequest, Result, Tx};
use serde_json::{json, Value};

use crate::on_both_stores;

/// The first user to write a space owns it; nobody else may write it.
async fn owner_only(tx: Tx, _: MutationRequest) -> Result<()> {
    match tx.get::<String>("owner").await? {
        None => tx.set("owner", tx.user()).await,
        Some(owner) if owner == tx.user() => Ok(()),
        Some(_) => Err(reject("only the owner writes here")),
    }
}

const OWNER_ONLY_JS: &str = r#"
export const mutators = {};
export async function writeRule(tx, { user }) {
  const owner = await tx.get('owner');
  if (owner === undefined) await tx.set('owner', user);
  else if (owner !== user) throw new Error('only the owner writes here');
}
"#;

fn apps() -> [(&'static str, App); 2] {
    let js = JsApp::from_source("owner-only.js", OWNER_ONLY_JS).expect("loads");
    [
        ("rust", app::app().write_rule(owner_only)),
        // The test app's Rust `put` with the rule in JavaScript.
        ("javascript", App::new(app::mutators()).js(js)),
    ]
}

on_both_stores! {
    async fn two_users_claiming_one_space_at_once_leave_one_owner(backend) {
        let store = backend.store().await;
        for (language, app) in apps() {
            let e = Arc::new(Engine::new(store.clone(), app, EngineConfig::default()));
            for round in 0..12 {
                let space = format!("team-{language}-{round}");
                let claim = |user: &'static str| {
                    let (e, space) = (e.clone(), space.clone());
                    async move {
                        // A group and client of their own in each space (a group belongs to one).
                        let note = mutation(&format!("{user}-{space}-c"), 1, "put", json!({"key": format!("note/{user}"), "value": user}));
                        let outcome = e
                            .push_outcome(&caller(user, &space), &push_request(&format!("{user}-{space}-g"), vec![note]))
                            .await
                            .expect("the push is answered");
                        match outcome {
                            Reply::Ok(outcome) => outcome.rejected.len(),
                            other => panic!("{other:?}"),
                        }
                    }
                };
                let (alice_rejected, bob_rejected) = tokio::join!(claim("alice"), claim("bob"));
                let view = pull_ok(&e, &caller("carol", &space), &format!("carol-{space}-g"), Value::Null).await;
                let owner = view.patch.iter().find_map(|op| match op {
                    replicache_dynamodb::protocol::PatchOp::Put { key, value } if key == "owner" => value.as_str().map(str::to_owned),
                    _ => None,
                });
                let owner = owner.expect("someone owns the space");
                let (other, rejections) = if owner == "alice" { ("bob", (alice_rejected, bob_rejected)) } else { ("alice", (bob_rejected, alice_rejected)) };
                assert_eq!(rejections, (0, 1), "{language} {space}: the owner's write lands, the other's is refused");
                let keys = puts(&view.patch);
                assert!(keys.contains(&format!("note/{owner}").as_str()), "{language} {space}: {keys:?}");
                assert!(!keys.contains(&format!("note/{other}").as_str()), "{language} {space}: nothing foreign lands: {keys:?}");
                assert_eq!(view.last_mutation_id_changes.len(), 0, "carol's own group has no clients");
            }
        }
    }
}
