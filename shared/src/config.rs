//! Settings read from the environment, once per process.

use crate::app::App;
use crate::auth::AuthMode;
use crate::engine::{EngineConfig, PushPath};

/// Default request body limit: 5 MiB.
pub(crate) const DEFAULT_MAX_BODY_BYTES: usize = 5 * 1024 * 1024;

/// Process settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Settings {
    /// `TABLE_NAME`: the DynamoDB table; `None` selects the in-memory store where allowed.
    pub table_name: Option<String>,
    /// `AUTH_MODE`: `jwt` or `header`.
    pub auth_mode: AuthMode,
    /// `SCHEMA_VERSION`: the schema version clients must send; empty or unset: any.
    pub schema_version: Option<String>,
    /// `MAX_BODY_BYTES`: largest request body accepted.
    pub max_body_bytes: usize,
    /// `PULL_BUDGET_BYTES`: most bytes of patch in one pull response (default 4 MiB).
    pub pull_budget_bytes: Option<usize>,
    /// `DYNAMODB_WARM_UP`: whether a Lambda function opens its DynamoDB connection during
    /// init (`true`, the default) or on its first request (`false`).
    pub warm_up: bool,
    /// `APP_BUNDLE`: the file of a JavaScript app (an ES module) whose mutators and space
    /// policy join the app's (feature `js`); unset or empty: none.
    pub app_bundle: Option<String>,
    /// `PUSH_PATH`: `direct` (the default), `queued`, or `auto` (per space, by contention).
    pub push_path: PushPath,
    /// `PUSH_QUEUE_URL`: the SQS FIFO queue pushes take unless `PUSH_PATH` is `direct`.
    pub push_queue_url: Option<String>,
}

/// A setting with a value that cannot be used.
#[derive(thiserror::Error)]
#[error("{name}: {message}")]
pub(crate) struct ConfigError {
    name: &'static str,
    message: String,
}

impl ConfigError {
    /// The error of the setting `name` (the environment variable).
    pub(crate) fn new(name: &'static str, message: impl Into<String>) -> Self {
        ConfigError {
            name,
            message: message.into(),
        }
    }

    /// The environment variable at fault.
    #[cfg_attr(not(feature = "lambda"), allow(dead_code))]
    pub(crate) fn name(&self) -> &'static str {
        self.name
    }
}

// A binary whose `main` returns this error prints it with `Debug`: the same line as `Display`.
impl std::fmt::Debug for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

impl Settings {
    /// The engine's configuration under these settings.
    pub(crate) fn engine_config(&self) -> EngineConfig {
        let default = EngineConfig::default();
        EngineConfig {
            schema_version: self.schema_version.clone(),
            pull_budget_bytes: self.pull_budget_bytes.unwrap_or(default.pull_budget_bytes),
            push_path: self.push_path,
            ..default
        }
    }

    /// `TABLE_NAME`, which the Lambda functions cannot run without.
    #[cfg_attr(not(feature = "lambda"), allow(dead_code))]
    pub(crate) fn required_table_name(&self) -> Result<&str, ConfigError> {
        self.table_name.as_deref().ok_or_else(|| {
            ConfigError::new(
                "TABLE_NAME",
                "not set: the functions need their DynamoDB table",
            )
        })
    }

    /// `app`, with the JavaScript app `APP_BUNDLE` names if it is set. A bundle that cannot
    /// be read, does not compile or exports no mutators is an error naming its file and line.
    pub(crate) fn app(&self, app: App) -> Result<App, ConfigError> {
        let Some(path) = &self.app_bundle else {
            return Ok(app);
        };
        #[cfg(feature = "js")]
        {
            let js = crate::js::JsApp::load(path)
                .map_err(|e| ConfigError::new("APP_BUNDLE", e.to_string()))?;
            Ok(app.js(js))
        }
        #[cfg(not(feature = "js"))]
        {
            let _ = app;
            Err(ConfigError::new(
                "APP_BUNDLE",
                format!("{path:?}: this build has no JavaScript engine (the feature js is off)"),
            ))
        }
    }

    /// These settings if the dev server honours them all. It has no JWT authorizer in front
    /// of it (the `Authorization` header is the user id): started with `AUTH_MODE=jwt`, it
    /// would silently let anyone claim any user where JWTs were meant to be checked.
    #[cfg_attr(not(feature = "dev-server"), allow(dead_code))]
    pub(crate) fn for_dev_server(self) -> Result<Settings, ConfigError> {
        if self.auth_mode != AuthMode::Header {
            return Err(ConfigError::new(
                "AUTH_MODE",
                "the dev server verifies no JWTs (the Authorization header is the user id): \
                 set AUTH_MODE=header or leave it unset",
            ));
        }
        Ok(self)
    }

    /// Reads the settings, with `default_auth` where `AUTH_MODE` is unset.
    pub(crate) fn from_env(default_auth: AuthMode) -> Result<Settings, ConfigError> {
        Self::from_lookup(default_auth, |name| std::env::var(name).ok())
    }

    /// Reads the settings through `lookup` (the environment, or a test's map).
    pub(crate) fn from_lookup(
        default_auth: AuthMode,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Settings, ConfigError> {
        let non_empty = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let auth_mode = match non_empty("AUTH_MODE") {
            None => default_auth,
            Some(v) => v
                .parse()
                .map_err(|message| ConfigError::new("AUTH_MODE", message))?,
        };
        let bytes = |name: &'static str| -> Result<Option<usize>, ConfigError> {
            match non_empty(name) {
                None => Ok(None),
                Some(v) => match v.trim().parse() {
                    Ok(n) if n > 0 => Ok(Some(n)),
                    _ => Err(ConfigError::new(
                        name,
                        format!("{v:?} is not a positive number of bytes"),
                    )),
                },
            }
        };
        let warm_up = match non_empty("DYNAMODB_WARM_UP").map(|v| v.trim().to_ascii_lowercase()) {
            None => true,
            Some(v) if v == "true" => true,
            Some(v) if v == "false" => false,
            Some(v) => {
                return Err(ConfigError::new(
                    "DYNAMODB_WARM_UP",
                    format!("{v:?} is neither true nor false"),
                ))
            }
        };
        let push_path = match non_empty("PUSH_PATH") {
            None => PushPath::Direct,
            Some(v) => v
                .trim()
                .parse()
                .map_err(|message| ConfigError::new("PUSH_PATH", message))?,
        };
        let push_queue_url = non_empty("PUSH_QUEUE_URL");
        if push_path != PushPath::Direct && push_queue_url.is_none() {
            return Err(ConfigError::new(
                "PUSH_QUEUE_URL",
                "not set: PUSH_PATH sends pushes to this queue",
            ));
        }
        Ok(Settings {
            push_path,
            push_queue_url,
            warm_up,
            table_name: non_empty("TABLE_NAME"),
            auth_mode,
            schema_version: non_empty("SCHEMA_VERSION"),
            max_body_bytes: bytes("MAX_BODY_BYTES")?.unwrap_or(DEFAULT_MAX_BODY_BYTES),
            pull_budget_bytes: bytes("PULL_BUDGET_BYTES")?,
            app_bundle: non_empty("APP_BUNDLE"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(vars: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        Settings::from_lookup(AuthMode::Jwt, |name| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.to_string())
        })
    }

    fn error(vars: &[(&str, &str)]) -> String {
        settings(vars)
            .expect_err("a configuration error")
            .to_string()
    }

    #[test]
    fn empty_values_mean_unset() {
        let s = settings(&[
            ("TABLE_NAME", ""),
            ("AUTH_MODE", " "),
            ("SCHEMA_VERSION", ""),
            ("MAX_BODY_BYTES", ""),
        ])
        .unwrap();
        assert_eq!(s.table_name, None);
        assert_eq!(s.auth_mode, AuthMode::Jwt);
        assert_eq!(s.schema_version, None);
        assert_eq!(s.max_body_bytes, DEFAULT_MAX_BODY_BYTES);
        assert!(s.warm_up);
    }

    #[test]
    fn warm_up_is_a_boolean() {
        assert!(
            !settings(&[("DYNAMODB_WARM_UP", " False ")])
                .unwrap()
                .warm_up
        );
        assert!(settings(&[("DYNAMODB_WARM_UP", "true")]).unwrap().warm_up);
        assert_eq!(
            error(&[("DYNAMODB_WARM_UP", "0")]),
            "DYNAMODB_WARM_UP: \"0\" is neither true nor false"
        );
    }

    #[test]
    fn values_are_read() {
        let s = settings(&[
            ("TABLE_NAME", "sync"),
            ("AUTH_MODE", "header"),
            ("SCHEMA_VERSION", "v2"),
            ("MAX_BODY_BYTES", " 1024 "),
        ])
        .unwrap();
        assert_eq!(s.required_table_name().unwrap(), "sync");
        assert_eq!(s.auth_mode, AuthMode::Header);
        assert_eq!(s.schema_version.as_deref(), Some("v2"));
        assert_eq!(s.max_body_bytes, 1024);
    }

    #[test]
    fn push_path_is_read_and_needs_a_queue() {
        assert_eq!(settings(&[]).unwrap().push_path, PushPath::Direct);
        let s = settings(&[("PUSH_PATH", "auto"), ("PUSH_QUEUE_URL", "https://q")]).unwrap();
        assert_eq!(s.push_path, PushPath::Auto);
        assert_eq!(s.engine_config().push_path, PushPath::Auto);
        assert!(error(&[("PUSH_PATH", "queued")]).starts_with("PUSH_QUEUE_URL: not set"));
        let bad = error(&[("PUSH_PATH", "fast"), ("PUSH_QUEUE_URL", "https://q")]);
        assert_eq!(bad, "PUSH_PATH: \"fast\" is not direct, queued or auto");
    }

    #[test]
    fn missing_table_name_is_named() {
        let e = settings(&[]).unwrap().required_table_name().unwrap_err();
        assert_eq!(e.name(), "TABLE_NAME");
        assert_eq!(
            e.to_string(),
            "TABLE_NAME: not set: the functions need their DynamoDB table"
        );
        // `main` returning it prints the same line.
        assert_eq!(format!("{e:?}"), e.to_string());
    }

    #[test]
    fn bad_auth_mode_is_named() {
        assert_eq!(
            error(&[("AUTH_MODE", "cognito")]),
            r#"AUTH_MODE: "cognito" is neither "jwt" nor "header""#
        );
    }

    #[test]
    fn the_dev_server_refuses_jwt_mode() {
        let e = settings(&[("AUTH_MODE", "jwt")])
            .unwrap()
            .for_dev_server()
            .unwrap_err();
        assert_eq!(e.name(), "AUTH_MODE");
        assert!(e.to_string().contains("verifies no JWTs"), "{e}");
        let header = settings(&[("AUTH_MODE", "header")]).unwrap();
        assert_eq!(header.clone().for_dev_server().unwrap(), header);
        let unset = Settings::from_lookup(AuthMode::Header, |_| None).unwrap();
        assert!(unset.for_dev_server().is_ok(), "the dev server's default");
    }

    #[test]
    fn bad_max_body_bytes_is_named() {
        assert_eq!(
            error(&[("MAX_BODY_BYTES", "5MB")]),
            r#"MAX_BODY_BYTES: "5MB" is not a positive number of bytes"#
        );
        assert_eq!(
            error(&[("MAX_BODY_BYTES", "0")]),
            r#"MAX_BODY_BYTES: "0" is not a positive number of bytes"#
        );
        assert_eq!(
            error(&[("MAX_BODY_BYTES", "-1")]),
            r#"MAX_BODY_BYTES: "-1" is not a positive number of bytes"#
        );
    }

    #[test]
    fn pull_budget_is_read_and_a_bad_one_named() {
        let s = settings(&[("PULL_BUDGET_BYTES", "65536")]).unwrap();
        assert_eq!(s.engine_config().pull_budget_bytes, 65536);
        let default = settings(&[]).unwrap().engine_config().pull_budget_bytes;
        assert_eq!(default, EngineConfig::default().pull_budget_bytes);
        assert_eq!(
            error(&[("PULL_BUDGET_BYTES", "lots")]),
            r#"PULL_BUDGET_BYTES: "lots" is not a positive number of bytes"#
        );
    }

    #[cfg(feature = "js")]
    #[test]
    fn a_bad_app_bundle_is_named_with_its_file_and_line() {
        let dir = std::env::temp_dir().join(format!("app-bundle-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let bad = dir.join("bad.js");
        std::fs::write(
            &bad,
            "export const mutators = {\n  async a(tx) { tx.set('k' 'v'); },\n};\n",
        )
        .unwrap();
        let good = dir.join("good.js");
        std::fs::write(&good, "export const mutators = { async a(tx) {} };\n").unwrap();
        let app = || App::new(crate::Mutators::new());
        let load = |path: &std::path::Path| {
            settings(&[("APP_BUNDLE", path.to_str().unwrap())])
                .unwrap()
                .app(app())
        };
        let e = load(&bad).unwrap_err();
        assert_eq!(e.name(), "APP_BUNDLE");
        let line = format!("APP_BUNDLE: {}:2: SyntaxError", bad.display());
        assert!(e.to_string().starts_with(&line), "{e}");
        assert!(load(&good).is_ok());
        let missing = load(&dir.join("missing.js")).unwrap_err().to_string();
        assert!(missing.contains("missing.js: cannot read it"), "{missing}");
        assert!(
            settings(&[]).unwrap().app(app()).is_ok(),
            "unset: the app as it is"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
