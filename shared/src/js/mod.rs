//! JavaScript applications: the very mutators a Replicache client is created with, and
//! optionally a space policy, run on the server by an embedded QuickJS engine.
//!
//! The app is one ES module (a bundle, for an app whose mutators import other files: `esbuild
//! mutators.js --bundle --format=esm`). It exports `mutators`, either the object passed to
//! `new Replicache({mutators})` or a function of the signed-in user that returns it (a default
//! export works too), and optionally `spacePolicy`:
//!
//! ```js
//! export const mutators = {
//!   async increment(tx, { key, by }) {
//!     await tx.set(key, ((await tx.get(key)) ?? 0) + by);
//!   },
//! };
//!
//! // Optional: true lets the user push to, pull from and listen to the space; false (or a
//! // throw, whose message is the reason) answers 403.
//! export async function spacePolicy({ user, space, operation, get, getIn }) {
//!   return space === `private-${user}` || (await get('members'))?.includes(user);
//! }
//!
//! // Optional: runs inside the push before every mutation, with its tx (see App::write_rule);
//! // a throw rejects the mutation.
//! export async function writeRule(tx, { name, args, user, space }) {
//!   if (!((await tx.get('members')) ?? [user]).includes(user)) throw new Error('members only');
//! }
//! ```
//!
//! A mutator gets a `tx` like Replicache's `WriteTransaction`: `get`, `has`, `set` (and
//! `put`), `del` (resolving to whether the key existed), `isEmpty`, `scan({prefix, start,
//! limit})` with `values()`, `keys()`, `entries()`, `toArray()` and async iteration, and
//! `clientID`, `mutationID`, `reason` (`"authoritative"`) and `location` (`"server"`). Each
//! call is performed by the engine exactly as for a Rust mutator's [`Tx`], so every
//! key read becomes a condition of the commit.
//!
//! - A mutator that throws, or whose promise rejects, is rejected like a Rust mutator that
//!   returns [`reject`]: skipped for good, its writes dropped, the reason logged.
//!   The engine's own outcomes (a read to retry, a store failure) never reach JavaScript, so no
//!   `catch` can swallow them.
//! - Each call has a CPU-time budget and its engine a memory limit ([`JsLimits`]); a mutator
//!   that exceeds either is rejected, and its engine is replaced before the next call.
//! - There is no file system, network or process access; `Date.now()` and `Math.random()`
//!   work as in a browser.
//!
//! Add it to an [`App`](crate::App) with [`App::js`](crate::App::js); mutators registered in
//! Rust under the same name take precedence, so an app can move one mutator to Rust. The
//! Lambda functions and the dev server load one from the file `APP_BUNDLE` names.

use std::fmt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rquickjs::{Context, Ctx, Function, Module, Object, Runtime};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::access::{Access, SpaceRequest};
use crate::error::{reject, Result};
use crate::tx::{Scan, Tx};

/// The bridge between the engine and the module (`bridge.js`).
const BRIDGE: &str = include_str!("bridge.js");
/// Engines kept ready for the next call; more are made when calls run at once.
const POOL: usize = 4;

/// What a JavaScript app may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JsLimits {
    /// CPU time one call (a mutation, a policy check) may spend running JavaScript; waiting
    /// for the store does not count. Default 200 ms.
    pub cpu_per_call: Duration,
    /// Memory one engine may allocate, the module's own included. Default 64 MiB.
    pub memory_bytes: usize,
}

impl Default for JsLimits {
    fn default() -> Self {
        JsLimits {
            cpu_per_call: Duration::from_millis(200),
            memory_bytes: 64 << 20,
        }
    }
}

/// Why a JavaScript app could not be loaded.
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
pub enum JsError {
    /// The file could not be read.
    #[error("{file}: cannot read it: {message}")]
    Read {
        /// The file.
        file: String,
        /// Why.
        message: String,
    },
    /// The module did not compile or its evaluation threw.
    #[error("{file}{}: {message}", line.map(|l| format!(":{l}")).unwrap_or_default())]
    Module {
        /// The file.
        file: String,
        /// The line, when the engine tells it.
        line: Option<u32>,
        /// The engine's message.
        message: String,
    },
    /// The module exports no mutators.
    #[error("{file} exports no mutators: export `mutators` (the object passed to `new Replicache`, or a function of the user returning it) or a default export")]
    NoMutators {
        /// The file.
        file: String,
    },
}

// A `main` returning this error prints it with `Debug`: the same line as `Display`.
impl fmt::Debug for JsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A JavaScript app: its mutators and optional space policy, ready to run. Cheap to clone.
///
/// ```
/// use replicache_dynamodb::js::JsApp;
/// use replicache_dynamodb::{App, Mutators};
///
/// let js = JsApp::from_source(
///     "mutators.js",
///     "export const mutators = { async touch(tx, key) { await tx.set(key, true); } };",
/// )
/// .expect("the module loads");
/// let app = App::new(Mutators::new()).js(js);
/// # let _ = app;
/// ```
#[derive(Clone)]
pub struct JsApp {
    shared: Arc<Shared>,
}

struct Shared {
    file: String,
    source: String,
    limits: JsLimits,
    has_policy: bool,
    has_write_rule: bool,
    idle: Mutex<Vec<Engine>>,
}

impl fmt::Debug for JsApp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JsApp")
            .field("file", &self.shared.file)
            .field("space_policy", &self.shared.has_policy)
            .field("limits", &self.shared.limits)
            .finish()
    }
}

impl JsApp {
    /// The app in the ES module `source`, named `file` in messages, with the default limits.
    pub fn from_source(file: &str, source: &str) -> Result<JsApp, JsError> {
        Self::with_limits(file, source, JsLimits::default())
    }

    /// The app in the ES module file at `path`.
    pub fn load(path: impl AsRef<Path>) -> Result<JsApp, JsError> {
        let path = path.as_ref();
        let file = path.display().to_string();
        let source = std::fs::read_to_string(path).map_err(|e| JsError::Read {
            file: file.clone(),
            message: e.to_string(),
        })?;
        Self::from_source(&file, &source)
    }

    /// The app in `source` with `limits`. Loads it once, so that a module that does not
    /// compile or exports no mutators fails here rather than at the first push.
    pub fn with_limits(file: &str, source: &str, limits: JsLimits) -> Result<JsApp, JsError> {
        let mut shared = Shared {
            file: file.to_owned(),
            source: source.to_owned(),
            limits,
            has_policy: false,
            has_write_rule: false,
            idle: Mutex::new(Vec::new()),
        };
        let engine = Engine::new(&shared)?;
        let exports: Value = engine
            .enter(limits.cpu_per_call, |ctx| {
                bridge(&ctx)?
                    .get::<_, Function>("exports")?
                    .call::<_, String>(())
            })
            .ok()
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or_default();
        if exports["mutators"] != json!(true) {
            return Err(JsError::NoMutators {
                file: file.to_owned(),
            });
        }
        shared.has_policy = exports["policy"] == json!(true);
        shared.has_write_rule = exports["writeRule"] == json!(true);
        if let Ok(idle) = shared.idle.get_mut() {
            idle.push(engine);
        }
        Ok(JsApp {
            shared: Arc::new(shared),
        })
    }

    /// Whether the module exports `spacePolicy`.
    pub fn has_space_policy(&self) -> bool {
        self.shared.has_policy
    }

    /// Whether the module exports `writeRule`.
    pub fn has_write_rule(&self) -> bool {
        self.shared.has_write_rule
    }

    /// Runs mutator `name` with `args` through `tx`; a throw, an unknown name or a limit
    /// reached is a rejection.
    pub(crate) async fn mutate(&self, name: &str, tx: Tx, args: Value) -> Result<()> {
        self.run_mutation("mutate", name, &tx, &args).await
    }

    /// Runs the module's `writeRule` for mutation `name(args)` through `tx`; a throw rejects
    /// the mutation.
    pub(crate) async fn write_rule(&self, tx: &Tx, name: &str, args: &Value) -> Result<()> {
        self.run_mutation("writeRule", name, tx, args).await
    }

    /// Runs the bridge's `entry` (`mutate` or `writeRule`) for mutation `name(args)`.
    async fn run_mutation(
        &self,
        entry: &'static str,
        name: &str,
        tx: &Tx,
        args: &Value,
    ) -> Result<()> {
        let info = json!({
            "user": tx.user(),
            "space": tx.space(),
            "clientID": tx.client_id(),
            "mutationID": tx.mutation_id(),
        });
        let start = Start::Mutate {
            entry,
            name,
            args: args.to_string(),
            info: info.to_string(),
        };
        match self.call(start, Host::Tx(tx)).await? {
            Outcome::Returned(_) => Ok(()),
            Outcome::Threw(reason) => Err(reject(reason)),
        }
    }

    /// The module's `spacePolicy` for `request`: `true` allows; anything else, or a throw,
    /// denies.
    pub(crate) async fn access(&self, request: SpaceRequest) -> Result<Access> {
        let described = json!({
            "user": request.user(),
            "space": request.space(),
            "operation": request.operation().name(),
        });
        let start = Start::Policy {
            request: described.to_string(),
        };
        Ok(match self.call(start, Host::Policy(&request)).await? {
            Outcome::Returned(true) => Access::Allow,
            Outcome::Returned(false) => Access::deny("this user may not use this space"),
            Outcome::Threw(reason) => Access::Deny(reason),
        })
    }

    /// Runs one call on an idle engine (or a new one), performing its requests in turn.
    async fn call(&self, start: Start<'_>, host: Host<'_>) -> Result<Outcome> {
        let engine = self.checkout()?;
        let mut budget = Budget::new(self.shared.limits.cpu_per_call);
        let outcome = drive(&engine, &mut budget, start, host).await;
        if !budget.spoiled {
            self.checkin(engine);
        }
        outcome
    }

    fn checkout(&self) -> Result<Engine> {
        let idle = self.shared.idle.lock().map(|mut idle| idle.pop());
        match idle {
            Ok(Some(engine)) => Ok(engine),
            _ => Engine::new(&self.shared)
                .map_err(|e| reject(format!("the JavaScript engine could not start: {e}"))),
        }
    }

    fn checkin(&self, engine: Engine) {
        if let Ok(mut idle) = self.shared.idle.lock() {
            if idle.len() < POOL {
                idle.push(engine);
            }
        }
    }
}

/// How a call starts.
enum Start<'a> {
    Mutate {
        /// The bridge's function: `mutate` or `writeRule`.
        entry: &'static str,
        name: &'a str,
        args: String,
        info: String,
    },
    Policy {
        request: String,
    },
}

/// What performs a call's requests.
#[derive(Clone, Copy)]
enum Host<'a> {
    Tx(&'a Tx),
    Policy(&'a SpaceRequest),
}

/// How a call ended, as JavaScript saw it.
enum Outcome {
    /// It returned (or resolved); whether with `true`.
    Returned(bool),
    /// It threw (or rejected), for this reason.
    Threw(String),
}

/// One step of a call, as the bridge reports it.
#[derive(Deserialize)]
#[serde(untagged)]
enum Step {
    Request {
        request: Request,
    },
    Finished {
        ok: bool,
        #[serde(default)]
        value: bool,
        #[serde(default)]
        reason: String,
    },
    Stuck {
        #[serde(rename = "stuck")]
        _stuck: bool,
    },
}

/// A `tx` (or policy) call for the engine to perform.
#[derive(Deserialize)]
#[serde(tag = "op", rename_all = "camelCase")]
enum Request {
    Get {
        key: String,
        space: Option<String>,
    },
    Has {
        key: String,
    },
    Set {
        key: String,
        value: String,
    },
    Del {
        key: String,
    },
    IsEmpty,
    Scan {
        prefix: String,
        start: Option<StartKey>,
        limit: Option<f64>,
        #[serde(default, rename = "keysOnly")]
        keys_only: bool,
    },
}

#[derive(Deserialize)]
struct StartKey {
    key: String,
    exclusive: bool,
}

/// Runs a call to its end: starts it, then performs each request it makes and hands back
/// the result, until it settles. An engine outcome (retry, store failure) ends the call at
/// once, unseen by JavaScript.
async fn drive(
    engine: &Engine,
    budget: &mut Budget,
    start: Start<'_>,
    host: Host<'_>,
) -> Result<Outcome> {
    let started = budget.run(engine, |ctx| {
        let bridge = bridge(&ctx)?;
        match &start {
            Start::Mutate {
                entry,
                name,
                args,
                info,
            } => bridge.get::<_, Function>(*entry)?.call::<_, ()>((
                *name,
                args.as_str(),
                info.as_str(),
            )),
            Start::Policy { request } => bridge
                .get::<_, Function>("policy")?
                .call::<_, ()>((request.as_str(),)),
        }
    });
    if let Err(reason) = started {
        return Ok(Outcome::Threw(reason));
    }
    loop {
        let step = budget.run(engine, |ctx| {
            while ctx.execute_pending_job() {}
            bridge(&ctx)?
                .get::<_, Function>("next")?
                .call::<_, String>(())
        });
        let step = match step {
            Ok(text) => serde_json::from_str::<Step>(&text)
                .map_err(|e| reject(format!("the JavaScript bridge answered {text:?}: {e}")))?,
            Err(reason) => return Ok(Outcome::Threw(reason)),
        };
        let request = match step {
            Step::Request { request } => request,
            Step::Finished {
                ok: true, value, ..
            } => return Ok(Outcome::Returned(value)),
            Step::Finished { reason, .. } => {
                // Memory the mutator ran out of may still be held (by globals it filled): the
                // next call gets a fresh engine.
                budget.spoiled |= reason.contains("out of memory");
                return Ok(Outcome::Threw(reason));
            }
            Step::Stuck { .. } => {
                return Ok(Outcome::Threw(
                    "its promise never settles (it awaits something that is not a tx call)".into(),
                ))
            }
        };
        let (ok, payload) = match perform(host, request).await {
            Ok(payload) => (true, payload),
            Err(e) if e.is_rejection() => (false, Some(e.to_string())),
            Err(e) => return Err(e),
        };
        let settled = budget.run(engine, |ctx| {
            bridge(&ctx)?
                .get::<_, Function>("settle")?
                .call::<_, ()>((ok, payload))
        });
        if let Err(reason) = settled {
            return Ok(Outcome::Threw(reason));
        }
    }
}

/// Performs one request; its result as JSON text (`None`: undefined).
async fn perform(host: Host<'_>, request: Request) -> Result<Option<String>> {
    let text = |v: Value| Some(v.to_string());
    match (host, request) {
        (Host::Tx(tx), Request::Get { key, space: None }) => {
            Ok(tx.get::<Value>(&key).await?.map(|v| v.to_string()))
        }
        (Host::Tx(tx), Request::Has { key }) => Ok(text(json!(tx.has(&key).await?))),
        (Host::Tx(tx), Request::Set { key, value }) => {
            let value: Value = serde_json::from_str(&value)
                .map_err(|e| reject(format!("the value for {key:?} is not JSON: {e}")))?;
            tx.set(&key, &value).await?;
            Ok(None)
        }
        // Whether it existed, as on the client: a read of the key, which the commit is then
        // conditioned on, as for any read.
        (Host::Tx(tx), Request::Del { key }) => {
            let existed = tx.has(&key).await?;
            tx.del(&key).await?;
            Ok(text(json!(existed)))
        }
        (Host::Tx(tx), Request::IsEmpty) => Ok(text(json!(tx.is_empty().await?))),
        (
            Host::Tx(tx),
            Request::Scan {
                prefix,
                start,
                limit,
                keys_only,
            },
        ) => {
            let mut scan = Scan::prefix(prefix);
            scan = match start {
                Some(StartKey {
                    key,
                    exclusive: true,
                }) => scan.start_after(key),
                Some(StartKey {
                    key,
                    exclusive: false,
                }) => scan.start_at(key),
                None => scan,
            };
            if let Some(limit) = limit {
                // As the client: a limit below 1 gives nothing.
                scan = scan.limit(limit.max(0.0) as usize);
            }
            // A keys-only scan answers `[key]` entries: `keys()` reads only the first.
            let pairs: Vec<Value> = if keys_only {
                let keys = tx.keys(scan).await?;
                keys.into_iter().map(|k| json!([k])).collect()
            } else {
                let entries = tx.scan::<Value>(scan).await?;
                entries.into_iter().map(|(k, v)| json!([k, v])).collect()
            };
            Ok(text(Value::Array(pairs)))
        }
        (Host::Policy(request), Request::Get { key, space }) => {
            let space = space.as_deref().unwrap_or(request.space());
            Ok(request
                .get_in::<Value>(space, &key)
                .await?
                .map(|v| v.to_string()))
        }
        (Host::Tx(_), Request::Get { .. }) | (Host::Policy(_), _) => {
            Err(reject("not available here"))
        }
    }
}

fn bridge<'js>(ctx: &Ctx<'js>) -> rquickjs::Result<Object<'js>> {
    ctx.globals().get("__replicacheBridge")
}

/// One QuickJS runtime with the bridge and the app's module loaded.
struct Engine {
    context: Context,
    clock: Arc<Clock>,
}

/// When the running JavaScript must stop, for the runtime's interrupt handler.
#[derive(Default)]
struct Clock {
    deadline: Mutex<Option<Instant>>,
    fired: AtomicBool,
}

impl Engine {
    fn new(shared: &Shared) -> Result<Engine, JsError> {
        let failed = |message: String| JsError::Module {
            file: shared.file.clone(),
            line: None,
            message,
        };
        let runtime = Runtime::new().map_err(|e| failed(e.to_string()))?;
        runtime.set_memory_limit(shared.limits.memory_bytes);
        runtime.set_max_stack_size(512 * 1024);
        let clock = Arc::new(Clock::default());
        let handler_clock = clock.clone();
        runtime.set_interrupt_handler(Some(Box::new(move || handler_clock.expired())));
        let context = Context::full(&runtime).map_err(|e| failed(e.to_string()))?;
        let engine = Engine { context, clock };
        let loaded = engine.enter(
            shared.limits.cpu_per_call.max(Duration::from_secs(1)),
            |ctx| {
                ctx.eval::<(), _>(BRIDGE)?;
                let (module, evaluated) =
                    Module::declare(ctx.clone(), shared.file.as_str(), shared.source.as_str())?
                        .eval()?;
                evaluated.finish::<()>()?;
                ctx.globals().set("__replicacheApp", module.namespace()?)
            },
        );
        match loaded {
            Ok(()) => Ok(engine),
            Err(Thrown { message, line }) => Err(JsError::Module {
                file: shared.file.clone(),
                line,
                message,
            }),
        }
    }

    /// Runs `f` in the engine for at most `budget` of CPU time. A throw comes back as its
    /// message and line.
    fn enter<R>(
        &self,
        budget: Duration,
        f: impl FnOnce(Ctx<'_>) -> rquickjs::Result<R>,
    ) -> Result<R, Thrown> {
        self.clock.fired.store(false, Ordering::Relaxed);
        self.clock.set(Some(Instant::now() + budget));
        let result = self
            .context
            .with(|ctx| f(ctx.clone()).map_err(|e| Thrown::of(&ctx, e)));
        self.clock.set(None);
        if self.clock.fired.load(Ordering::Relaxed) {
            return Err(Thrown {
                message: format!("used up its CPU time ({} ms)", budget.as_millis()),
                line: None,
            });
        }
        result
    }
}

impl Clock {
    fn set(&self, deadline: Option<Instant>) {
        if let Ok(mut d) = self.deadline.lock() {
            *d = deadline;
        }
    }

    fn expired(&self) -> bool {
        let due = self
            .deadline
            .lock()
            .ok()
            .and_then(|d| *d)
            .is_some_and(|d| Instant::now() >= d);
        if due {
            self.fired.store(true, Ordering::Relaxed);
        }
        due
    }
}

/// A call's CPU time left, and whether its engine is still fit for another call.
struct Budget {
    left: Duration,
    total: Duration,
    spoiled: bool,
}

impl Budget {
    fn new(total: Duration) -> Self {
        Budget {
            left: total,
            total,
            spoiled: false,
        }
    }

    /// Runs one step of the call. A throw that escaped the bridge (the budget used up, memory
    /// exhausted) spoils the engine: it is dropped rather than reused.
    fn run<R>(
        &mut self,
        engine: &Engine,
        f: impl FnOnce(Ctx<'_>) -> rquickjs::Result<R>,
    ) -> Result<R, String> {
        let began = Instant::now();
        let result = engine.enter(self.left, f);
        self.left = self.left.saturating_sub(began.elapsed());
        result.map_err(|thrown| {
            self.spoiled = true;
            if engine.clock.fired.load(Ordering::Relaxed) {
                format!("used up its CPU time ({} ms)", self.total.as_millis())
            } else {
                format!("the JavaScript engine stopped: {}", thrown.message)
            }
        })
    }
}

/// What JavaScript threw, as far as it can be told.
struct Thrown {
    message: String,
    line: Option<u32>,
}

impl Thrown {
    fn of(ctx: &Ctx<'_>, error: rquickjs::Error) -> Thrown {
        if !error.is_exception() {
            return Thrown {
                message: error.to_string(),
                line: None,
            };
        }
        let caught = ctx.catch();
        let Some(exception) = caught.as_exception() else {
            let message = caught
                .as_string()
                .and_then(|s| s.to_string().ok())
                .unwrap_or_else(|| format!("a thrown {}", caught.type_name()));
            return Thrown {
                message,
                line: None,
            };
        };
        let name: String = exception.get("name").unwrap_or_else(|_| "Error".into());
        let message = format!("{name}: {}", exception.message().unwrap_or_default());
        // The engine reports the place in the first frame of the stack: "at file:line:col".
        let line = exception
            .get::<_, u32>("lineNumber")
            .ok()
            .or_else(|| line_of(&exception.stack().unwrap_or_default()));
        Thrown { message, line }
    }
}

/// The line of the first `file:line:column` in a stack trace.
fn line_of(stack: &str) -> Option<u32> {
    let frame = stack.lines().find_map(|l| l.trim().strip_prefix("at "))?;
    let frame = frame.trim_end_matches(')');
    let mut parts = frame.rsplitn(3, ':');
    let _column = parts.next()?;
    parts.next()?.parse().ok()
}
