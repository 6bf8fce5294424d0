//! [`App`]: an application as the server runs it: its mutators, who may use which space, and
//! its schema version.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::access::{Access, MutationRequest, SpaceRequest};
use crate::error::Result;
use crate::mutators::Mutators;
use crate::tx::Tx;

type Policy =
    Arc<dyn Fn(SpaceRequest) -> Pin<Box<dyn Future<Output = Result<Access>> + Send>> + Send + Sync>;

type WriteRule = Arc<
    dyn Fn(Tx, MutationRequest) -> Pin<Box<dyn Future<Output = Result<()>> + Send>> + Send + Sync,
>;

/// An application: its [`Mutators`], its space policy and its schema version. Hand it to the
/// Lambda entry point (`lambda::serve`), the local server (`dev::run`) or the test
/// helper (`testing::TestServer`).
///
/// ```
/// use replicache_dynamodb::{Access, App, Mutators, Result, Tx};
///
/// async fn touch(tx: Tx, key: String) -> Result<()> {
///     tx.set(&key, &true).await
/// }
///
/// // Every user has one private space, named after them.
/// let app = App::new(Mutators::new().register("touch", touch))
///     .space_policy(|request| async move {
///         Ok(Access::from(request.space() == format!("private-{}", request.user())))
///     })
///     .schema_version("1");
/// # let _ = app;
/// ```
#[derive(Clone)]
pub struct App {
    pub(crate) mutators: Mutators,
    policy: Option<Policy>,
    write_rule: Option<WriteRule>,
    pub(crate) schema_version: Option<String>,
}

impl App {
    /// An application with these mutators, open to every authenticated user in every space,
    /// accepting any schema version.
    pub fn new(mutators: Mutators) -> Self {
        App {
            mutators,
            policy: None,
            write_rule: None,
            schema_version: None,
        }
    }

    /// Decides, before anything is read or written, whether a user may push to, pull from or
    /// listen to a space. [`Access::Deny`] answers 403; an error a read ran into answers 503.
    pub fn space_policy<F, Fut>(mut self, policy: F) -> Self
    where
        F: Fn(SpaceRequest) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Access>> + Send + 'static,
    {
        let policy = Arc::new(policy);
        self.policy = Some(Arc::new(move |request| {
            let policy = policy.clone();
            Box::pin(async move { policy(request).await })
        }));
        self
    }

    /// Runs `rule` inside the push before every mutation, with the mutation's own [`Tx`]: what
    /// it reads becomes a condition of the commit, as for a mutator, so a rule such as "only
    /// the members a record of the space names may write" cannot race with a concurrent change
    /// of that record; what it writes commits with the mutation (claiming an unclaimed space,
    /// say). A rejection rejects the mutation (skipped, its lmid advanced, nothing of it or
    /// the rule written). One place for the rules about writes, so that no mutator repeats
    /// them; the space policy still decides, before anything else, who may use the space.
    ///
    /// ```
    /// use replicache_dynamodb::{reject, App, Mutators, MutationRequest, Result, Tx};
    ///
    /// /// The first user to write a space owns it; nobody else may write it.
    /// async fn owner_only(tx: Tx, _: MutationRequest) -> Result<()> {
    ///     match tx.get::<String>("owner").await? {
    ///         None => tx.set("owner", tx.user()).await,
    ///         Some(owner) if owner == tx.user() => Ok(()),
    ///         Some(_) => Err(reject("only the owner writes here")),
    ///     }
    /// }
    ///
    /// let app = App::new(Mutators::new()).write_rule(owner_only);
    /// # let _ = app;
    /// ```
    pub fn write_rule<F, Fut>(mut self, rule: F) -> Self
    where
        F: Fn(Tx, MutationRequest) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<()>> + Send + 'static,
    {
        let rule = Arc::new(rule);
        self.write_rule = Some(Arc::new(move |tx, mutation| {
            let rule = rule.clone();
            Box::pin(async move { rule(tx, mutation).await })
        }));
        self
    }

    /// Refuses requests whose `schemaVersion` is not `version` (`VersionNotSupported`); the
    /// `SCHEMA_VERSION` setting overrides it.
    pub fn schema_version(mut self, version: impl Into<String>) -> Self {
        self.schema_version = Some(version.into()).filter(|v| !v.is_empty());
        self
    }

    /// Adds a JavaScript app (feature `js`): its mutators run for every name not registered
    /// in Rust, and its `spacePolicy`, if it exports one, decides access unless a Rust
    /// [`App::space_policy`] is set. Replaces a JavaScript app added before.
    #[cfg(feature = "js")]
    pub fn js(mut self, js: crate::js::JsApp) -> Self {
        self.mutators.js = Some(js);
        self
    }

    /// The application's mutators.
    pub fn mutators(&self) -> &Mutators {
        &self.mutators
    }

    /// Runs mutation `name(args)` through `tx`: the write rule first (the Rust one, else the
    /// JavaScript app's `writeRule`), then the mutator, unless the rule rejected it.
    pub(crate) async fn run(&self, tx: Tx, name: &str, args: &serde_json::Value) -> Result<()> {
        match &self.write_rule {
            Some(rule) => {
                let mutation = MutationRequest {
                    name: name.to_owned(),
                    args: args.clone(),
                };
                rule(tx.clone(), mutation).await?
            }
            #[cfg(feature = "js")]
            None => {
                if let Some(js) = self.mutators.js.as_ref().filter(|js| js.has_write_rule()) {
                    js.write_rule(&tx, name, args).await?;
                }
            }
            #[cfg(not(feature = "js"))]
            None => {}
        }
        self.mutators.run(name, tx, args.clone()).await
    }

    /// The policy's answer for `request`; a rejection made inside the policy denies.
    pub(crate) async fn access(&self, request: SpaceRequest) -> Result<Access> {
        let answer = match &self.policy {
            Some(policy) => policy(request).await,
            #[cfg(feature = "js")]
            None => match &self.mutators.js {
                Some(js) if js.has_space_policy() => js.access(request).await,
                _ => return Ok(Access::Allow),
            },
            #[cfg(not(feature = "js"))]
            None => return Ok(Access::Allow),
        };
        match answer {
            Err(e) if e.is_rejection() => Ok(Access::Deny(e.to_string())),
            other => other,
        }
    }
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("mutators", &self.mutators)
            .field("space_policy", &self.policy.is_some())
            .field("write_rule", &self.write_rule.is_some())
            .field("schema_version", &self.schema_version)
            .finish()
    }
}
