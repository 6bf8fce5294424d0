//! The application: todo lists, one per user, in the space `private-<user>`. Replace it with
//! yours; the functions and the dev server in `src/bin` run whatever [`app`] returns.

use replicache_dynamodb::{reject, Access, App, Mutators, Result, Scan, Tx};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
pub struct Todo {
    id: String,
    text: String,
    completed: bool,
    sort: u64,
}

#[derive(Deserialize)]
pub struct NewTodo {
    id: String,
    text: String,
}

pub async fn create_todo(tx: Tx, NewTodo { id, text }: NewTodo) -> Result<()> {
    if text.trim().is_empty() {
        return Err(reject("a todo needs text"));
    }
    let last = tx.scan::<Todo>(Scan::prefix("todo/")).await?;
    let sort = last.iter().map(|(_, t)| t.sort + 1).max().unwrap_or(0);
    let todo = Todo {
        id,
        text,
        completed: false,
        sort,
    };
    tx.set(&format!("todo/{}", todo.id), &todo).await
}

pub fn app() -> App {
    App::new(Mutators::new().register("createTodo", create_todo))
        // Who may push to, pull from and listen to a space: here, only its owner.
        .space_policy(|req| async move {
            let own = format!("private-{}", req.user());
            Ok(Access::from(req.space() == own))
        })
}
