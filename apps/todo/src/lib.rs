//! Todo lists, as an example application of `replicache-dynamodb`.
//!
//! Each list is a space:
//!
//! - `private-<user>`: that user's own list; nobody else may pull, push or listen.
//! - `list-<id>`: a shared list. Its `members` record names its owner and members; only they
//!   may use it. A space without that record is unclaimed: whoever calls `createList` in it
//!   first owns it, and nothing else may be written there until then.
//!
//! Who may read is the space policy's ([`space_policy`]); who may write is decided in one
//! place too, inside the push ([`write_rule`]), so that no mutator repeats it and a member
//! removed while a push is in flight cannot slip a write in.
//!
//! Keys: `todo/<id>` holds a [`Todo`], `members` the [`Members`], `meta` the list's name.
//! The client-side mutators, mirroring these, are in `apps/todo/client/mutators.js`.

use replicache_dynamodb::{
    reject, Access, App, MutationRequest, Mutators, Result, SpaceRequest, Tx,
};
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};

/// Longest todo text, in characters.
pub const MAX_TEXT_CHARS: usize = 1_000;
/// Most members of a shared list.
pub const MAX_MEMBERS: usize = 100;

/// A todo, under `todo/<id>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Todo {
    /// Its id.
    pub id: String,
    /// What to do.
    pub text: String,
    /// Done or not.
    pub completed: bool,
    /// Position in the list (ascending).
    pub sort: u64,
}

/// Who may use a shared list, under `members`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Members {
    /// The user who created the list; only they share and unshare it.
    pub owner: String,
    /// Everyone who may use it, owner included.
    pub members: Vec<String>,
}

/// Arguments of `createList`.
#[derive(Deserialize)]
pub struct NewList {
    name: String,
}

/// Arguments of `createTodo`.
#[derive(Deserialize)]
pub struct NewTodo {
    id: String,
    text: String,
}

/// Arguments of `updateTodo`: the fields to change.
#[derive(Deserialize)]
pub struct TodoUpdate {
    id: String,
    text: Option<String>,
    completed: Option<bool>,
}

/// Arguments of `deleteTodo`.
#[derive(Deserialize)]
pub struct TodoId {
    id: String,
}

/// Arguments of `share` and `unshare`.
#[derive(Deserialize)]
pub struct Member {
    user: String,
}

/// `createList {name}`: claims an unclaimed shared list for the pushing user.
pub async fn create_list(tx: Tx, NewList { name }: NewList) -> Result<()> {
    if !tx.space().starts_with(SHARED) {
        return Err(reject("only shared lists (list-<id>) are created"));
    }
    if tx.has("members").await? {
        return Err(reject("this list already exists"));
    }
    let owner = tx.user().to_owned();
    let members = Members {
        owner: owner.clone(),
        members: vec![owner],
    };
    tx.set("members", &members).await?;
    tx.set("meta", &ListMeta { name }).await
}

/// `createTodo {id, text}`: adds a todo at the end of the list.
pub async fn create_todo(tx: Tx, NewTodo { id, text }: NewTodo) -> Result<()> {
    check_text(&text)?;
    let key = todo_key(&id)?;
    if tx.has(&key).await? {
        return Err(reject(format!("todo {id:?} already exists")));
    }
    // The end of the list: one past the largest position (a scan, so that two clients
    // adding at once are serialized rather than given the same position).
    let todos = tx.scan::<Todo>(TODOS).await?;
    let sort = todos.iter().map(|(_, t)| t.sort + 1).max().unwrap_or(0);
    let todo = Todo {
        id,
        text,
        completed: false,
        sort,
    };
    tx.set(&key, &todo).await
}

/// `updateTodo {id, text?, completed?}`: changes a todo (a read-modify-write).
pub async fn update_todo(tx: Tx, update: TodoUpdate) -> Result<()> {
    let key = todo_key(&update.id)?;
    let Some(mut todo) = tx.get::<Todo>(&key).await? else {
        return Err(reject(format!("no todo {:?}", update.id)));
    };
    if let Some(text) = update.text {
        check_text(&text)?;
        todo.text = text;
    }
    if let Some(completed) = update.completed {
        todo.completed = completed;
    }
    tx.set(&key, &todo).await
}

/// `deleteTodo {id}`: removes a todo.
pub async fn delete_todo(tx: Tx, TodoId { id }: TodoId) -> Result<()> {
    tx.del(&todo_key(&id)?).await
}

/// `clearCompleted {}`: removes every completed todo.
pub async fn clear_completed(tx: Tx, _: IgnoredAny) -> Result<()> {
    for (key, todo) in tx.scan::<Todo>(TODOS).await? {
        if todo.completed {
            tx.del(&key).await?;
        }
    }
    Ok(())
}

/// `share {user}`: the owner lets `user` use the list.
pub async fn share(tx: Tx, Member { user }: Member) -> Result<()> {
    let mut members = owned_members(&tx).await?;
    if user.is_empty() {
        return Err(reject("user must not be empty"));
    }
    if !members.members.contains(&user) {
        if members.members.len() >= MAX_MEMBERS {
            return Err(reject(format!("a list has at most {MAX_MEMBERS} members")));
        }
        members.members.push(user);
    }
    tx.set("members", &members).await
}

/// `unshare {user}`: the owner takes the list away from `user`.
pub async fn unshare(tx: Tx, Member { user }: Member) -> Result<()> {
    let mut members = owned_members(&tx).await?;
    if user == members.owner {
        return Err(reject("the owner cannot leave their own list"));
    }
    members.members.retain(|m| *m != user);
    tx.set("members", &members).await
}

/// Who may write: in a shared list its members, and while it is unclaimed only the
/// `createList` that claims it. It runs inside the push with the mutation's `Tx`, so the
/// `members` record it reads is a condition of the commit.
pub async fn write_rule(tx: Tx, mutation: MutationRequest) -> Result<()> {
    if !tx.space().starts_with(SHARED) {
        // A private list: the space policy admits its owner only.
        return Ok(());
    }
    match tx.get::<Members>("members").await? {
        None if mutation.name == "createList" => Ok(()),
        None => Err(reject("this list is unclaimed: createList first")),
        Some(m) if m.members.iter().any(|u| u == tx.user()) => Ok(()),
        Some(_) => Err(reject("not a member of this list")),
    }
}

/// Who may use which list; see the crate documentation.
pub async fn space_policy(request: SpaceRequest) -> Result<Access> {
    let space = request.space();
    if let Some(user) = space.strip_prefix(PRIVATE) {
        return Ok(if user == request.user() {
            Access::Allow
        } else {
            Access::deny("this is another user's private list")
        });
    }
    if space.starts_with(SHARED) {
        return Ok(match request.get::<Members>("members").await? {
            // Unclaimed: the first createList claims it.
            None => Access::Allow,
            Some(m) if m.members.iter().any(|u| u == request.user()) => Access::Allow,
            Some(_) => Access::deny("not a member of this list"),
        });
    }
    Ok(Access::deny("spaces are private-<user> or list-<id>"))
}

/// The todo application.
pub fn app() -> App {
    App::new(
        Mutators::new()
            .register("createList", create_list)
            .register("createTodo", create_todo)
            .register("updateTodo", update_todo)
            .register("deleteTodo", delete_todo)
            .register("clearCompleted", clear_completed)
            .register("share", share)
            .register("unshare", unshare),
    )
    .space_policy(space_policy)
    .write_rule(write_rule)
}

const PRIVATE: &str = "private-";
const SHARED: &str = "list-";
const TODOS: &str = "todo/";

/// The list's members, if the pushing user owns the list.
async fn owned_members(tx: &Tx) -> Result<Members> {
    match tx.get::<Members>("members").await? {
        Some(m) if m.owner == tx.user() => Ok(m),
        Some(_) => Err(reject("only the owner shares and unshares a list")),
        None => Err(reject("this is not a shared list (createList first)")),
    }
}

fn todo_key(id: &str) -> Result<String> {
    if id.is_empty() {
        return Err(reject("id must not be empty"));
    }
    Ok(format!("{TODOS}{id}"))
}

fn check_text(text: &str) -> Result<()> {
    if text.trim().is_empty() {
        return Err(reject("a todo needs text"));
    }
    if text.chars().count() > MAX_TEXT_CHARS {
        return Err(reject(format!(
            "text is longer than {MAX_TEXT_CHARS} characters"
        )));
    }
    Ok(())
}

/// The list's name, under `meta`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ListMeta {
    /// Shown to members.
    pub name: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use replicache_dynamodb::engine::EngineError;
    use replicache_dynamodb::testing::{Mutated, TestServer};
    use serde_json::json;

    fn rejected(outcome: Mutated) -> bool {
        matches!(outcome, Mutated::Rejected(_))
    }

    #[tokio::test]
    async fn todos_are_added_at_the_end_updated_and_cleared() {
        let server = TestServer::new(app());
        let alice = server.client("alice", "private-alice");
        for (id, text) in [("a", "milk"), ("b", "eggs"), ("c", "bread")] {
            let outcome = alice
                .mutate("createTodo", json!({"id": id, "text": text}))
                .await;
            assert_eq!(outcome.unwrap(), Mutated::Applied);
        }
        let sorts: Vec<u64> = server
            .entries("private-alice", "todo/")
            .await
            .into_iter()
            .map(|(_, v)| v["sort"].as_u64().unwrap())
            .collect();
        assert_eq!(sorts, [0, 1, 2]);

        let done = json!({"id": "b", "completed": true});
        assert_eq!(
            alice.mutate("updateTodo", done).await.unwrap(),
            Mutated::Applied
        );
        let b = server
            .get::<Todo>("private-alice", "todo/b")
            .await
            .unwrap()
            .unwrap();
        assert!(b.completed && b.text == "eggs");
        assert_eq!(
            alice.mutate("clearCompleted", ()).await.unwrap(),
            Mutated::Applied
        );
        let left: Vec<String> = server
            .entries("private-alice", "todo/")
            .await
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(left, ["todo/a", "todo/c"]);

        // Rejections: no text, an id taken, an unknown todo, bad arguments.
        assert!(rejected(
            alice
                .mutate("createTodo", json!({"id": "d", "text": " "}))
                .await
                .unwrap()
        ));
        assert!(rejected(
            alice
                .mutate("createTodo", json!({"id": "a", "text": "again"}))
                .await
                .unwrap()
        ));
        assert!(rejected(
            alice
                .mutate("updateTodo", json!({"id": "zz", "completed": true}))
                .await
                .unwrap()
        ));
        assert!(rejected(
            alice.mutate("createTodo", json!({"id": 7})).await.unwrap()
        ));
        // A new todo goes after the last one left.
        alice
            .mutate("createTodo", json!({"id": "e", "text": "jam"}))
            .await
            .unwrap();
        assert_eq!(
            server
                .get::<Todo>("private-alice", "todo/e")
                .await
                .unwrap()
                .unwrap()
                .sort,
            3
        );
    }

    #[tokio::test]
    async fn private_lists_are_private() {
        let server = TestServer::new(app());
        let bob = server.client("bob", "private-alice");
        let refused = bob
            .mutate("createTodo", json!({"id": "x", "text": "mine now"}))
            .await;
        assert!(
            matches!(refused, Err(EngineError::Forbidden(_))),
            "{refused:?}"
        );
        assert!(matches!(bob.pull().await, Err(EngineError::Forbidden(_))));
        assert_eq!(server.entries("private-alice", "").await, vec![]);
        let elsewhere = server.client("bob", "somewhere");
        assert!(matches!(
            elsewhere.pull().await,
            Err(EngineError::Forbidden(_))
        ));
    }

    #[tokio::test]
    async fn an_unclaimed_list_takes_nothing_but_its_claim() {
        let server = TestServer::new(app());
        let space = "list-unclaimed";
        let mallory = server.client("mallory", space);
        let todo = json!({"id": "1", "text": "spam"});
        assert!(rejected(mallory.mutate("createTodo", todo).await.unwrap()));
        assert_eq!(server.entries(space, "").await, vec![]);
        let alice = server.client("alice", space);
        let claim = json!({"name": "Groceries"});
        assert_eq!(
            alice.mutate("createList", claim).await.unwrap(),
            Mutated::Applied
        );
    }

    #[tokio::test]
    async fn shared_lists_admit_their_members_only() {
        let server = TestServer::new(app());
        let space = "list-groceries";
        let alice = server.client("alice", space);
        let bob = server.client("bob", space);
        let carol = server.client("carol", space);
        assert_eq!(
            alice
                .mutate("createList", json!({"name": "Groceries"}))
                .await
                .unwrap(),
            Mutated::Applied
        );
        // Claimed: a second createList is rejected, strangers are refused.
        assert!(rejected(
            alice
                .mutate("createList", json!({"name": "Mine"}))
                .await
                .unwrap()
        ));
        assert!(matches!(bob.pull().await, Err(EngineError::Forbidden(_))));

        assert_eq!(
            alice.mutate("share", json!({"user": "bob"})).await.unwrap(),
            Mutated::Applied
        );
        assert_eq!(
            bob.mutate("createTodo", json!({"id": "1", "text": "apples"}))
                .await
                .unwrap(),
            Mutated::Applied
        );
        // A pull from scratch: a clear, then each key of the space once, in no promised order.
        let pulled = serde_json::to_value(bob.pull().await.unwrap().patch).unwrap();
        let mut patch = pulled.as_array().unwrap().clone();
        patch[1..].sort_by(|a, b| a["key"].as_str().cmp(&b["key"].as_str()));
        let list = json!({"owner": "alice", "members": ["alice", "bob"]});
        let todo = json!({"id": "1", "text": "apples", "completed": false, "sort": 0});
        assert_eq!(
            patch,
            [
                json!({"op": "clear"}),
                json!({"op": "put", "key": "members", "value": list}),
                json!({"op": "put", "key": "meta", "value": {"name": "Groceries"}}),
                json!({"op": "put", "key": "todo/1", "value": todo}),
            ]
        );
        // Only the owner shares.
        assert!(rejected(
            bob.mutate("share", json!({"user": "carol"})).await.unwrap()
        ));
        assert!(matches!(carol.pull().await, Err(EngineError::Forbidden(_))));
        assert_eq!(
            alice
                .mutate("unshare", json!({"user": "bob"}))
                .await
                .unwrap(),
            Mutated::Applied
        );
        assert!(matches!(bob.pull().await, Err(EngineError::Forbidden(_))));
        let members = server
            .get::<Members>(space, "members")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(members.members, ["alice"]);
    }
}
