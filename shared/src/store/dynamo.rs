//! The DynamoDB store: one table, partition key `pk` (the space, or the client group),
//! sort key `sk`, and a local secondary index `by-version` on (`pk`, `v`) that every
//! versioned record appears in.

use std::collections::{HashMap, HashSet};
use std::ops::Bound;

use async_trait::async_trait;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{
    AttributeValue, ConditionCheck, KeysAndAttributes, Put, TransactWriteItem,
};
use aws_sdk_dynamodb::Client as DynamoClient;

use super::layout::{
    attr, CLIENT_PREFIX, CONNECTION_PK_PREFIX, GROUP_PK_PREFIX, LISTENERS_SK, META_SK,
    SPACE_PK_PREFIX, TICKET_PK_PREFIX, VERSION_INDEX,
};
use super::{
    item_key, space_pk, Address, Client, CommitLog, Connection, Entity, EntityQuery, Expect, Group,
    Limits, Listeners, Page, PageToken, Record, SpaceMeta, SpentTicket, Store, StoreError, Version,
    Write, Written, COMMIT_LOG_PREFIX, ENTITY_PREFIX,
};

type Item = HashMap<String, AttributeValue>;

/// BatchGetItem rounds for keys DynamoDB left unprocessed before giving up (503).
const MAX_UNPROCESSED_ROUNDS: u32 = 8;

/// The AWS SDK configuration from the standard environment (region, credentials, endpoint
/// variables, profiles), with [`http_client`]. Load it once per process and make every AWS
/// client from it.
pub async fn load_sdk_config() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(http_client())
        .load()
        .await
}

/// The HTTP client for AWS SDK clients: hyper with rustls on `ring`, trusting the platform's
/// root certificates. The crate builds the SDK without its default client (see the
/// workspace manifest), so a client configured by hand needs this one. Make one per Tokio
/// runtime: its pooled connections belong to the runtime that opened them.
pub fn http_client() -> aws_sdk_dynamodb::config::SharedHttpClient {
    use aws_smithy_http_client::tls;
    aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https()
}

/// The group id the warm-up reads: never a real group, since the engine refuses ids with
/// control characters.
const WARM_UP_GROUP: &str = "\u{1}warm-up";

/// [`Store`] on a DynamoDB table.
#[derive(Clone)]
pub struct DynamoStore {
    client: DynamoClient,
    table: String,
}

impl DynamoStore {
    /// A store on `table` through `client`.
    pub fn new(client: DynamoClient, table: impl Into<String>) -> Self {
        DynamoStore {
            client,
            table: table.into(),
        }
    }

    /// A store on `table` with the SDK configured from the standard AWS environment
    /// (`AWS_REGION`, credentials, `AWS_ENDPOINT_URL_DYNAMODB` or `AWS_ENDPOINT_URL` for
    /// DynamoDB Local). An empty endpoint variable means unset (`sam local` passes `""` for
    /// the template's absent value); endpoints in AWS profile files are not used. A missing
    /// region or an endpoint that is not an http(s) URL is an error naming the variable.
    pub async fn from_env(table: impl Into<String>) -> Result<Self, FromEnvError> {
        Self::from_shared_config(&load_sdk_config().await, table)
    }

    /// [`DynamoStore::from_env`] with an SDK configuration already loaded, so that a process
    /// with several AWS clients loads it once.
    pub fn from_shared_config(
        shared: &aws_config::SdkConfig,
        table: impl Into<String>,
    ) -> Result<Self, FromEnvError> {
        let endpoint = endpoint_url(|name| std::env::var(name).ok())?;
        let config = client_config(shared, endpoint)?;
        Ok(Self::new(DynamoClient::from_conf(config), table))
    }

    /// Makes one cheap request (a consistent read of an item that never exists) so that the
    /// connection, its TLS session and the SDK's credentials are ready before the first real
    /// request, which then does not pay for the handshake (a Lambda function calls it during
    /// init). A failure is only logged: requests retry on their own.
    pub async fn warm_up(&self) {
        let probe = [Address::Group {
            group: WARM_UP_GROUP.to_owned(),
        }];
        if let Err(e) = self.get(&probe).await {
            tracing::warn!(error = %e, "could not warm the DynamoDB connection up");
        }
    }

    /// The SDK client.
    pub fn client(&self) -> &DynamoClient {
        &self.client
    }

    /// The table name.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// Creates the table as `template.yaml` declares it (for DynamoDB Local; deployments get
    /// it from the template). An existing table is left as it is.
    pub async fn create_table(&self) -> Result<(), StoreError> {
        use aws_sdk_dynamodb::types::{
            AttributeDefinition, BillingMode, KeySchemaElement, KeyType, LocalSecondaryIndex,
            Projection, ProjectionType, ScalarAttributeType,
        };
        let key = |name: &str, kind: KeyType| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(kind)
                .build()
                .map_err(|e| StoreError::Rejected(e.to_string()))
        };
        let attribute = |name: &str, kind: ScalarAttributeType| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(kind)
                .build()
                .map_err(|e| StoreError::Rejected(e.to_string()))
        };
        let index = LocalSecondaryIndex::builder()
            .index_name(VERSION_INDEX)
            .key_schema(key(attr::PK, KeyType::Hash)?)
            .key_schema(key(attr::VERSION, KeyType::Range)?)
            .projection(
                Projection::builder()
                    .projection_type(ProjectionType::All)
                    .build(),
            )
            .build()
            .map_err(|e| StoreError::Rejected(e.to_string()))?;
        let result = self
            .client
            .create_table()
            .table_name(&self.table)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(attribute(attr::PK, ScalarAttributeType::S)?)
            .attribute_definitions(attribute(attr::SK, ScalarAttributeType::S)?)
            .attribute_definitions(attribute(attr::VERSION, ScalarAttributeType::N)?)
            .key_schema(key(attr::PK, KeyType::Hash)?)
            .key_schema(key(attr::SK, KeyType::Range)?)
            .local_secondary_indexes(index)
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_in_use_exception()) =>
            {
                Ok(())
            }
            Err(e) => Err(classify(e)),
        }
    }

    /// The items at `addresses` (each once), with only the `projection`'s attributes if one
    /// is given: BatchGetItem, 100 keys a request.
    async fn batch_get(
        &self,
        addresses: &[Address],
        projection: Option<String>,
    ) -> Result<Vec<Item>, StoreError> {
        let mut found = Vec::new();
        // Each key once (BatchGetItem refuses duplicates), in time linear in the addresses.
        let mut seen = HashSet::with_capacity(addresses.len());
        let mut wanted: Vec<Item> = addresses
            .iter()
            .filter(|a| seen.insert(item_key(a)))
            .map(key_item)
            .collect();
        // BatchGetItem takes 100 keys and may leave some unprocessed (throttling): ask again
        // for those, backing off, a bounded number of times.
        let mut throttled = 0u32;
        while !wanted.is_empty() {
            let rest = wanted.split_off(wanted.len().min(100));
            let request = KeysAndAttributes::builder()
                .set_keys(Some(std::mem::replace(&mut wanted, rest)))
                .consistent_read(true)
                .set_projection_expression(projection.clone())
                .build()
                .map_err(|e| StoreError::Rejected(e.to_string()))?;
            let out = self
                .client
                .batch_get_item()
                .request_items(&self.table, request)
                .send()
                .await
                .map_err(classify)?;
            for item in out
                .responses()
                .and_then(|r| r.get(&self.table))
                .into_iter()
                .flatten()
            {
                found.push(item.clone());
            }
            let unprocessed = out
                .unprocessed_keys()
                .and_then(|u| u.get(&self.table))
                .map(|k| k.keys().to_vec())
                .unwrap_or_default();
            if !unprocessed.is_empty() {
                throttled += 1;
                if throttled >= MAX_UNPROCESSED_ROUNDS {
                    return Err(StoreError::Unavailable(format!(
                        "{} keys still unprocessed after {throttled} BatchGetItem rounds",
                        unprocessed.len()
                    )));
                }
                let cap_ms = 10u64 << throttled.min(6);
                tokio::time::sleep(std::time::Duration::from_millis(fastrand::u64(0..=cap_ms)))
                    .await;
                wanted.extend(unprocessed);
            }
        }
        Ok(found)
    }

    async fn query_page(
        &self,
        index: Option<&str>,
        condition: &str,
        values: Vec<(&str, AttributeValue)>,
        page: Option<PageToken>,
    ) -> Result<Page, StoreError> {
        let (items, next) = self
            .query_items(index, condition, values, page, None, None)
            .await?;
        let records = items.iter().map(decode).collect::<Result<Vec<_>, _>>()?;
        Ok(Page { records, next })
    }

    /// One page of a query's items, at most `limit`, with only the attributes `projection`
    /// names (all without one).
    async fn query_items(
        &self,
        index: Option<&str>,
        condition: &str,
        values: Vec<(&str, AttributeValue)>,
        page: Option<PageToken>,
        limit: Option<i32>,
        projection: Option<&str>,
    ) -> Result<(Vec<Item>, Option<PageToken>), StoreError> {
        let start = page.map(|t| decode_token(&t)).transpose()?;
        let mut query = self
            .client
            .query()
            .table_name(&self.table)
            .set_index_name(index.map(str::to_owned))
            .key_condition_expression(condition)
            .consistent_read(true)
            .set_exclusive_start_key(start)
            .set_limit(limit)
            .set_projection_expression(projection.map(str::to_owned));
        for (name, value) in values {
            query = query.expression_attribute_values(name, value);
        }
        let out = query.send().await.map_err(classify)?;
        let next = out.last_evaluated_key().map(encode_token);
        Ok((out.items.unwrap_or_default(), next))
    }
}

#[async_trait]
impl Store for DynamoStore {
    fn limits(&self) -> Limits {
        Limits::DYNAMODB
    }

    async fn get(&self, addresses: &[Address]) -> Result<Vec<Option<Record>>, StoreError> {
        let found: HashMap<(String, String), Record> = self
            .batch_get(addresses, None)
            .await?
            .iter()
            .map(|item| decode(item).map(|r| (item_key(&r.address()), r)))
            .collect::<Result<_, _>>()?;
        Ok(addresses
            .iter()
            .map(|a| found.get(&item_key(a)).cloned())
            .collect())
    }

    async fn versions(&self, addresses: &[Address]) -> Result<Vec<Option<Version>>, StoreError> {
        // Keys and versions only: what is transferred and held stays small however large
        // the values (DynamoDB still charges reads by item size).
        let projection = format!("{}, {}, {}", attr::PK, attr::SK, attr::VERSION);
        let mut found: HashMap<(String, String), Version> = HashMap::new();
        for item in self.batch_get(addresses, Some(projection)).await? {
            let f = Fields(&item);
            let key = (f.text(attr::PK)?, f.text(attr::SK)?);
            found.insert(key, f.number(attr::VERSION)?);
        }
        Ok(addresses
            .iter()
            .map(|a| found.get(&item_key(a)).copied())
            .collect())
    }

    async fn changes(
        &self,
        space: &str,
        after: Version,
        page: Option<PageToken>,
    ) -> Result<Page, StoreError> {
        self.query_page(
            Some(VERSION_INDEX),
            &format!("{} = :pk AND {} > :v", attr::PK, attr::VERSION),
            vec![
                (":pk", AttributeValue::S(space_pk(space))),
                (":v", AttributeValue::N(after.to_string())),
            ],
            page,
        )
        .await
    }

    async fn entities(
        &self,
        space: &str,
        query: &EntityQuery,
        page: Option<PageToken>,
    ) -> Result<Page, StoreError> {
        let prefix = format!("{ENTITY_PREFIX}{}", query.prefix);
        let pk = space_pk(space);
        // A start at or after the prefix is the query's lower bound, up to the first sort key
        // after the prefix (DynamoDB takes one condition on the sort key); an excluded start
        // is where the query begins after. A start before the prefix changes nothing.
        let (start, excluded) = match &query.start {
            Bound::Unbounded => (None, false),
            Bound::Included(k) => (Some(format!("{ENTITY_PREFIX}{k}")), false),
            Bound::Excluded(k) => (Some(format!("{ENTITY_PREFIX}{k}")), true),
        };
        let start = start.filter(|s| *s >= prefix);
        let mut values = vec![(":pk", AttributeValue::S(pk.clone()))];
        let condition = match (&start, first_after_prefix(&prefix)) {
            (None, _) => {
                values.push((":prefix", AttributeValue::S(prefix.clone())));
                "pk = :pk AND begins_with(sk, :prefix)"
            }
            (Some(lo), Some(hi)) if *lo >= hi => return Ok(Page::default()),
            (Some(lo), Some(hi)) => {
                values.push((":lo", AttributeValue::S(lo.clone())));
                values.push((":hi", AttributeValue::S(hi)));
                "pk = :pk AND sk BETWEEN :lo AND :hi"
            }
            (Some(lo), None) => {
                values.push((":lo", AttributeValue::S(lo.clone())));
                "pk = :pk AND sk >= :lo"
            }
        };
        let first = match start {
            Some(lo) if excluded && page.is_none() => Some(PageToken(
                serde_json::json!({"pk": {"S": pk}, "sk": {"S": lo}}).to_string(),
            )),
            _ => page,
        };
        // What a keys-only read keeps of an item: enough to tell a tombstone and the version.
        let projection = query.keys_only.then_some("pk, sk, v, deleted, expires_at");
        let limit = query
            .page_limit
            .map(|l| l.clamp(1, i32::MAX as usize) as i32);
        let (items, next) = self
            .query_items(None, condition, values, first, limit, projection)
            .await?;
        let mut records = Vec::with_capacity(items.len());
        for item in &items {
            let Record::Entity(mut entity) = decode(item)? else {
                continue;
            };
            // The upper bound is inclusive: the first key after the prefix is no key of it.
            if !query.selects(&entity.key) {
                continue;
            }
            if query.keys_only && !item.contains_key("deleted") {
                entity.value = Some(String::new());
            }
            records.push(Record::Entity(entity));
        }
        Ok(Page { records, next })
    }

    async fn commit_logs(&self, space: &str, page: Option<PageToken>) -> Result<Page, StoreError> {
        self.sort_key_prefix(space, COMMIT_LOG_PREFIX.to_owned(), page)
            .await
    }

    async fn write(&self, writes: Vec<Write>) -> Result<(), StoreError> {
        let items = writes
            .into_iter()
            .map(|w| self.transact_item(w))
            .collect::<Result<Vec<_>, _>>()?;
        self.client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await
            .map_err(classify_transaction)?;
        Ok(())
    }
}

impl DynamoStore {
    /// One page of the space's items whose sort key starts with `prefix`, from the table.
    async fn sort_key_prefix(
        &self,
        space: &str,
        prefix: String,
        page: Option<PageToken>,
    ) -> Result<Page, StoreError> {
        self.query_page(
            None,
            &format!("{} = :pk AND begins_with({}, :prefix)", attr::PK, attr::SK),
            vec![
                (":pk", AttributeValue::S(space_pk(space))),
                (":prefix", AttributeValue::S(prefix)),
            ],
            page,
        )
        .await
    }

    fn transact_item(&self, write: Write) -> Result<TransactWriteItem, StoreError> {
        let invalid = |e: aws_sdk_dynamodb::error::BuildError| StoreError::Rejected(e.to_string());
        match write {
            Write::Put { record, expect } => {
                let (condition, names, values) = condition(&record.address(), expect);
                let put = Put::builder()
                    .table_name(&self.table)
                    .set_item(Some(encode(&record)))
                    .set_condition_expression(condition)
                    .set_expression_attribute_names(names)
                    .set_expression_attribute_values(values)
                    .build()
                    .map_err(invalid)?;
                Ok(TransactWriteItem::builder().put(put).build())
            }
            Write::Check { address, expect } => {
                let (condition, names, values) = condition(&address, expect);
                let check = ConditionCheck::builder()
                    .table_name(&self.table)
                    .set_key(Some(key_item(&address)))
                    .condition_expression(condition.unwrap_or_else(|| {
                        format!(
                            "attribute_exists({0}) OR attribute_not_exists({0})",
                            attr::PK
                        )
                    }))
                    .set_expression_attribute_names(names)
                    .set_expression_attribute_values(values)
                    .build()
                    .map_err(invalid)?;
                Ok(TransactWriteItem::builder().condition_check(check).build())
            }
        }
    }
}

type Condition = (
    Option<String>,
    Option<HashMap<String, String>>,
    Option<HashMap<String, AttributeValue>>,
);

fn condition(address: &Address, expect: Expect) -> Condition {
    match expect {
        Expect::Any => (None, None, None),
        Expect::Absent => (
            Some(format!("attribute_not_exists({})", attr::PK)),
            None,
            None,
        ),
        Expect::Version(v) => {
            let attribute = match address {
                Address::Space { .. } => attr::SPACE_VERSION,
                Address::Listeners { .. } => attr::REV,
                Address::Group { .. } => attr::EXPIRES_AT,
                _ => attr::VERSION,
            };
            (
                Some("#version = :expected".into()),
                Some(HashMap::from([("#version".into(), attribute.into())])),
                Some(HashMap::from([(
                    ":expected".into(),
                    AttributeValue::N(v.to_string()),
                )])),
            )
        }
    }
}

fn key_item(address: &Address) -> Item {
    let (pk, sk) = item_key(address);
    HashMap::from([
        (attr::PK.to_owned(), AttributeValue::S(pk)),
        (attr::SK.to_owned(), AttributeValue::S(sk)),
    ])
}

fn n(v: u64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_owned())
}

fn encode(record: &Record) -> Item {
    let mut item = key_item(&record.address());
    let mut set = |name: &str, value: AttributeValue| {
        item.insert(name.to_owned(), value);
    };
    match record {
        Record::Space(m) => {
            set(attr::SPACE_VERSION, n(m.version));
            set(attr::EPOCH, s(&m.epoch));
            if let Some(at) = m.hot_until {
                set(attr::HOT_UNTIL, n(at));
            }
        }
        Record::Entity(e) => {
            set(attr::VERSION, n(e.version));
            match &e.value {
                Some(value) => set(attr::VALUE, s(value)),
                None => set(attr::DELETED, AttributeValue::Bool(true)),
            }
            if let Some(at) = e.expires_at {
                set(attr::EXPIRES_AT, n(at));
            }
        }
        Record::Client(c) => {
            set(attr::VERSION, n(c.version));
            set(attr::LMID, n(c.lmid));
            set(attr::GROUP, s(&c.group));
            if let Some(at) = c.expires_at {
                set(attr::EXPIRES_AT, n(at));
            }
        }
        Record::CommitLog(l) => {
            set(attr::VERSION, n(l.version));
            let written = l
                .written
                .iter()
                .map(|w| match w {
                    Written::Entity(k) => AttributeValue::S(format!("{ENTITY_PREFIX}{k}")),
                    Written::Client(c) => AttributeValue::S(format!("{CLIENT_PREFIX}{c}")),
                })
                .collect();
            set(attr::WRITTEN, AttributeValue::L(written));
        }
        Record::Group(g) => {
            set(attr::USER, s(&g.user));
            set(attr::SPACE, s(&g.space));
            if let Some(at) = g.expires_at {
                set(attr::EXPIRES_AT, n(at));
            }
            if g.refused {
                set(attr::REFUSED, AttributeValue::Bool(true));
            }
        }
        Record::Listeners(l) => {
            set(attr::REV, n(l.rev));
            let connections = l
                .connections
                .iter()
                .map(|(id, expires)| (id.clone(), n(*expires)))
                .collect();
            set(attr::CONNS, AttributeValue::M(connections));
            let owners = l
                .owners
                .iter()
                .map(|(id, owner)| (id.clone(), s(owner)))
                .collect();
            set(attr::OWNERS, AttributeValue::M(owners));
            if !l.watches.is_empty() {
                let watches = l
                    .watches
                    .iter()
                    .map(|(id, watch)| (id.clone(), s(watch)))
                    .collect();
                set(attr::WATCHES, AttributeValue::M(watches));
            }
            if !l.recheck.is_empty() {
                let recheck = l
                    .recheck
                    .iter()
                    .map(|(id, version)| (id.clone(), n(*version)))
                    .collect();
                set(attr::RECHECK, AttributeValue::M(recheck));
            }
        }
        Record::Connection(c) => {
            set(attr::SPACE, s(&c.space));
            set(attr::USER, s(&c.user));
            // The table's TTL attribute: DynamoDB deletes the item some time after.
            set(attr::EXPIRES_AT, n(c.expires_at));
        }
        Record::SpentTicket(t) => set(attr::EXPIRES_AT, n(t.expires_at)),
    }
    item
}

/// An item's attributes, read with errors that name what is malformed.
struct Fields<'a>(&'a Item);

impl Fields<'_> {
    fn bad(&self, what: &str) -> StoreError {
        StoreError::Rejected(format!("malformed item: {what} in {:?}", self.0))
    }

    fn text(&self, name: &str) -> Result<String, StoreError> {
        self.0
            .get(name)
            .and_then(|v| v.as_s().ok())
            .cloned()
            .ok_or_else(|| self.bad(name))
    }

    fn map(&self, name: &str) -> Option<&HashMap<String, AttributeValue>> {
        self.0.get(name).and_then(|v| v.as_m().ok())
    }

    fn number(&self, name: &str) -> Result<u64, StoreError> {
        self.0
            .get(name)
            .and_then(|v| v.as_n().ok())
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| self.bad(name))
    }
}

fn decode(item: &Item) -> Result<Record, StoreError> {
    let f = Fields(item);
    let pk = f.text(attr::PK)?;
    let sk = f.text(attr::SK)?;
    if let Some(group) = pk.strip_prefix(GROUP_PK_PREFIX) {
        return Ok(Record::Group(Group {
            id: group.to_owned(),
            user: f.text(attr::USER)?,
            space: f.text(attr::SPACE)?,
            expires_at: f.number(attr::EXPIRES_AT).ok(),
            refused: f.0.get(attr::REFUSED).and_then(|v| v.as_bool().ok()) == Some(&true),
        }));
    }
    if let Some(id) = pk.strip_prefix(TICKET_PK_PREFIX) {
        return Ok(Record::SpentTicket(SpentTicket {
            id: id.to_owned(),
            expires_at: f.number(attr::EXPIRES_AT)?,
        }));
    }
    if let Some(id) = pk.strip_prefix(CONNECTION_PK_PREFIX) {
        return Ok(Record::Connection(Connection {
            id: id.to_owned(),
            space: f.text(attr::SPACE)?,
            user: f.text(attr::USER)?,
            expires_at: f.number(attr::EXPIRES_AT)?,
        }));
    }
    let space = pk
        .strip_prefix(SPACE_PK_PREFIX)
        .ok_or_else(|| f.bad(attr::PK))?
        .to_owned();
    decode_in_space(&f, space, &sk)
}

/// An item of `space`, by its sort key `sk`.
fn decode_in_space(f: &Fields<'_>, space: String, sk: &str) -> Result<Record, StoreError> {
    if sk == LISTENERS_SK {
        return decode_listeners(f, space);
    }
    if sk == META_SK {
        return Ok(Record::Space(SpaceMeta {
            space,
            version: f.number(attr::SPACE_VERSION)?,
            epoch: f.text(attr::EPOCH)?,
            hot_until: f.number(attr::HOT_UNTIL).ok(),
        }));
    }
    if let Some(key) = sk.strip_prefix(ENTITY_PREFIX) {
        return Ok(Record::Entity(Entity {
            space,
            key: key.to_owned(),
            version: f.number(attr::VERSION)?,
            value: f.0.get(attr::VALUE).and_then(|v| v.as_s().ok()).cloned(),
            expires_at: f.number(attr::EXPIRES_AT).ok(),
        }));
    }
    if let Some(id) = sk.strip_prefix(CLIENT_PREFIX) {
        return Ok(Record::Client(Client {
            space,
            id: id.to_owned(),
            group: f.text(attr::GROUP)?,
            version: f.number(attr::VERSION)?,
            lmid: f.number(attr::LMID)?,
            expires_at: f.number(attr::EXPIRES_AT).ok(),
        }));
    }
    if let Some(slot) = sk.strip_prefix(COMMIT_LOG_PREFIX) {
        return decode_commit_log(f, space, slot);
    }
    Err(f.bad(attr::SK))
}

fn decode_listeners(f: &Fields<'_>, space: String) -> Result<Record, StoreError> {
    let connections = f
        .map(attr::CONNS)
        .ok_or_else(|| f.bad(attr::CONNS))?
        .iter()
        .map(|(id, expires)| {
            let expires = expires.as_n().ok().and_then(|n| n.parse().ok());
            Ok((id.clone(), expires.ok_or_else(|| f.bad(attr::CONNS))?))
        })
        .collect::<Result<_, StoreError>>()?;
    // Absent from items written before owners were kept.
    let owners = f
        .map(attr::OWNERS)
        .into_iter()
        .flatten()
        .filter_map(|(id, owner)| Some((id.clone(), owner.as_s().ok()?.clone())))
        .collect();
    // Absent when no connection's policy read anything.
    let watches = f
        .map(attr::WATCHES)
        .into_iter()
        .flatten()
        .map(|(id, watch)| {
            let watch = watch.as_s().map_err(|_| f.bad(attr::WATCHES))?;
            Ok((id.clone(), watch.clone()))
        })
        .collect::<Result<_, StoreError>>()?;
    let recheck = f
        .map(attr::RECHECK)
        .into_iter()
        .flatten()
        .map(|(id, version)| {
            let version = version.as_n().ok().and_then(|n| n.parse().ok());
            Ok((id.clone(), version.ok_or_else(|| f.bad(attr::RECHECK))?))
        })
        .collect::<Result<_, StoreError>>()?;
    Ok(Record::Listeners(Listeners {
        space,
        rev: f.number(attr::REV)?,
        connections,
        owners,
        watches,
        recheck,
    }))
}

fn decode_commit_log(f: &Fields<'_>, space: String, slot: &str) -> Result<Record, StoreError> {
    let written =
        f.0.get(attr::WRITTEN)
            .and_then(|v| v.as_l().ok())
            .ok_or_else(|| f.bad(attr::WRITTEN))?
            .iter()
            .map(|w| {
                let w = w.as_s().map_err(|_| f.bad(attr::WRITTEN))?;
                if let Some(k) = w.strip_prefix(ENTITY_PREFIX) {
                    Ok(Written::Entity(k.to_owned()))
                } else if let Some(c) = w.strip_prefix(CLIENT_PREFIX) {
                    Ok(Written::Client(c.to_owned()))
                } else {
                    Err(f.bad(attr::WRITTEN))
                }
            })
            .collect::<Result<_, _>>()?;
    Ok(Record::CommitLog(CommitLog {
        space,
        slot: slot.parse().map_err(|_| f.bad("slot"))?,
        version: f.number(attr::VERSION)?,
        written,
    }))
}

fn encode_token(key: &Item) -> PageToken {
    let plain: serde_json::Map<String, serde_json::Value> = key
        .iter()
        .map(|(k, v)| {
            let v = match v {
                AttributeValue::N(n) => serde_json::json!({"N": n}),
                AttributeValue::S(s) => serde_json::json!({"S": s}),
                _ => serde_json::Value::Null,
            };
            (k.clone(), v)
        })
        .collect();
    PageToken(serde_json::Value::Object(plain).to_string())
}

/// The first string after every string that starts with `prefix`, if there is one: the
/// prefix with its last character moved to the next (UTF-8 byte order is code point order).
fn first_after_prefix(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let next = (last as u32 + 1..=char::MAX as u32).find_map(char::from_u32);
        if let Some(next) = next {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

fn decode_token(token: &PageToken) -> Result<Item, StoreError> {
    let bad = || StoreError::Rejected(format!("bad page token {:?}", token.0));
    let plain: HashMap<String, HashMap<String, String>> =
        serde_json::from_str(&token.0).map_err(|_| bad())?;
    plain
        .into_iter()
        .map(|(k, v)| {
            let value = match (v.get("S"), v.get("N")) {
                (Some(s), _) => AttributeValue::S(s.clone()),
                (_, Some(n)) => AttributeValue::N(n.clone()),
                _ => return Err(bad()),
            };
            Ok((k, value))
        })
        .collect()
}

/// Error codes that mean "not now" rather than "never".
const TRANSIENT: &[&str] = &[
    "ThrottlingException",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "InternalServerError",
    "ServiceUnavailable",
    "TransactionInProgressException",
    "ThrottlingError",
    "ProvisionedThroughputExceeded",
];

fn classify<E: ProvideErrorMetadata + std::fmt::Debug, R: std::fmt::Debug>(
    e: SdkError<E, R>,
) -> StoreError {
    match &e {
        SdkError::ServiceError(service) => {
            let err = service.err();
            let code = err.code().unwrap_or("Unknown");
            let message = format!("{code}: {}", err.message().unwrap_or_default());
            if TRANSIENT.contains(&code) {
                StoreError::Unavailable(message)
            } else {
                StoreError::Rejected(message)
            }
        }
        SdkError::ConstructionFailure(_) => StoreError::Rejected(format!("{e:?}")),
        _ => StoreError::Unavailable(format!("{e:?}")),
    }
}

fn classify_transaction(
    e: SdkError<
        aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError,
        aws_sdk_dynamodb::config::http::HttpResponse,
    >,
) -> StoreError {
    use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError as E;
    if let SdkError::ServiceError(service) = &e {
        if let E::TransactionCanceledException(cancelled) = service.err() {
            {
                let codes: Vec<&str> = cancelled
                    .cancellation_reasons()
                    .iter()
                    .filter_map(|r| r.code())
                    .filter(|c| *c != "None")
                    .collect();
                let message = format!("transaction cancelled: {codes:?}");
                return if codes
                    .iter()
                    .all(|c| matches!(*c, "ConditionalCheckFailed" | "TransactionConflict"))
                {
                    StoreError::Conflict(message)
                } else if codes.iter().any(|c| TRANSIENT.contains(c)) {
                    StoreError::Unavailable(message)
                } else {
                    StoreError::Rejected(message)
                };
            }
        }
    }
    classify(e)
}

/// A setting of the environment that [`DynamoStore::from_env`] cannot use.
#[derive(Debug, thiserror::Error)]
#[error("{variable}: {message}")]
pub struct FromEnvError {
    variable: &'static str,
    message: String,
}

impl FromEnvError {
    fn new(variable: &'static str, message: impl Into<String>) -> Self {
        FromEnvError {
            variable,
            message: message.into(),
        }
    }

    /// The environment variable at fault.
    pub fn variable(&self) -> &'static str {
        self.variable
    }

    /// What is wrong with it.
    pub fn message(&self) -> &str {
        &self.message
    }
}

/// The DynamoDB endpoint from `AWS_ENDPOINT_URL_DYNAMODB`, else `AWS_ENDPOINT_URL` (read
/// through `lookup`); empty or blank means unset; anything else must be an http(s) URL.
fn endpoint_url(lookup: impl Fn(&str) -> Option<String>) -> Result<Option<String>, FromEnvError> {
    for name in ["AWS_ENDPOINT_URL_DYNAMODB", "AWS_ENDPOINT_URL"] {
        let Some(value) = lookup(name).filter(|v| !v.trim().is_empty()) else {
            continue;
        };
        let value = value.trim();
        let valid = value.parse::<http::Uri>().is_ok_and(|uri| {
            matches!(uri.scheme_str(), Some("http" | "https"))
                && uri.host().is_some_and(|h| !h.is_empty())
        });
        if !valid {
            return Err(FromEnvError::new(
                name,
                format!("{value:?} is not an http(s) URL (such as http://localhost:8000)"),
            ));
        }
        return Ok(Some(value.to_owned()));
    }
    Ok(None)
}

/// The DynamoDB client's configuration: `shared`, with `endpoint` in place of whatever
/// endpoint the SDK found in the environment or a profile itself (it would take an empty
/// one and panic on the first request), and a region required.
fn client_config(
    shared: &aws_config::SdkConfig,
    endpoint: Option<String>,
) -> Result<aws_sdk_dynamodb::Config, FromEnvError> {
    if shared.region().is_none() {
        return Err(FromEnvError::new(
            "AWS_REGION",
            "not set, and no region in the AWS profile: the SDK cannot sign requests without one",
        ));
    }
    let mut builder = aws_sdk_dynamodb::config::Builder::from(shared);
    builder.set_endpoint_url(endpoint);
    Ok(builder.build())
}

#[cfg(test)]
mod config_tests {
    use super::*;

    fn endpoint(vars: &[(&str, &str)]) -> Result<Option<String>, FromEnvError> {
        endpoint_url(|name| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.to_string())
        })
    }

    /// Stops every request before it is signed and sent, and keeps its URI.
    #[derive(Debug, Clone, Default)]
    struct CaptureUri(std::sync::Arc<std::sync::Mutex<Option<String>>>);

    impl aws_sdk_dynamodb::config::Intercept for CaptureUri {
        fn name(&self) -> &'static str {
            "CaptureUri"
        }

        fn read_before_signing(
            &self,
            context: &aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextRef<
                '_,
            >,
            _: &aws_sdk_dynamodb::config::RuntimeComponents,
            _: &mut aws_sdk_dynamodb::config::ConfigBag,
        ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
            *self.0.lock().unwrap() = Some(context.request().uri().to_owned());
            Err("captured".into())
        }
    }

    /// The URI a request through a client on `config` goes to.
    async fn request_uri(config: aws_sdk_dynamodb::Config) -> Option<String> {
        let capture = CaptureUri::default();
        let config = config
            .to_builder()
            .interceptor(capture.clone())
            .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
                "local", "local", None, None, "test",
            ))
            .build();
        let _ = DynamoClient::from_conf(config).list_tables().send().await;
        let uri = capture.0.lock().unwrap().clone();
        uri
    }

    fn shared(region: Option<&str>, endpoint: Option<&str>) -> aws_config::SdkConfig {
        let mut builder = aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest());
        builder.set_region(region.map(|r| aws_config::Region::new(r.to_owned())));
        builder.set_endpoint_url(endpoint.map(str::to_owned));
        builder.build()
    }

    #[test]
    fn the_first_string_after_a_prefix_bounds_its_keys() {
        assert_eq!(first_after_prefix("e/p/").as_deref(), Some("e/p0"));
        assert_eq!(first_after_prefix("e/").as_deref(), Some("e0"));
        // The last character has no next: the one before it moves instead.
        assert_eq!(first_after_prefix("e/a\u{10FFFF}").as_deref(), Some("e/b"));
        // Surrogates are no characters: after U+D7FF comes U+E000.
        assert_eq!(
            first_after_prefix("e/\u{D7FF}").as_deref(),
            Some("e/\u{E000}")
        );
        assert_eq!(first_after_prefix("\u{10FFFF}"), None);
        for key in ["e/p/", "e/p/\u{10FFFF}\u{10FFFF}", "e/p/zzz"] {
            assert!(key < first_after_prefix("e/p/").unwrap().as_str());
        }
    }

    #[tokio::test]
    async fn an_empty_endpoint_means_unset() {
        for empty in ["", " ", "\t\n"] {
            assert_eq!(
                endpoint(&[("AWS_ENDPOINT_URL_DYNAMODB", empty)]).unwrap(),
                None
            );
            assert_eq!(
                endpoint(&[
                    ("AWS_ENDPOINT_URL_DYNAMODB", empty),
                    ("AWS_ENDPOINT_URL", empty)
                ])
                .unwrap(),
                None
            );
        }
        assert_eq!(endpoint(&[]).unwrap(), None);
        // An empty endpoint the SDK itself picked up is replaced, not kept (the SDK would
        // panic on the request with "URL was unset"): the region's endpoint is used.
        let config = client_config(&shared(Some("us-east-1"), Some("")), None).unwrap();
        assert_eq!(
            request_uri(config).await.as_deref(),
            Some("https://dynamodb.us-east-1.amazonaws.com/")
        );
    }

    #[tokio::test]
    async fn the_service_endpoint_wins_then_the_general_one() {
        assert_eq!(
            endpoint(&[
                (
                    "AWS_ENDPOINT_URL_DYNAMODB",
                    " http://host.containers.internal:8000 "
                ),
                ("AWS_ENDPOINT_URL", "http://other:1"),
            ])
            .unwrap()
            .as_deref(),
            Some("http://host.containers.internal:8000")
        );
        assert_eq!(
            endpoint(&[
                ("AWS_ENDPOINT_URL_DYNAMODB", ""),
                ("AWS_ENDPOINT_URL", "https://dynamodb.example.com")
            ])
            .unwrap()
            .as_deref(),
            Some("https://dynamodb.example.com")
        );
        let config = client_config(
            &shared(Some("us-east-1"), Some("")),
            Some("http://127.0.0.1:8000".into()),
        )
        .unwrap();
        assert_eq!(
            request_uri(config).await.as_deref(),
            Some("http://127.0.0.1:8000/")
        );
    }

    #[test]
    fn a_bad_endpoint_is_named() {
        for (name, bad) in [
            ("AWS_ENDPOINT_URL_DYNAMODB", "localhost:8000"),
            ("AWS_ENDPOINT_URL_DYNAMODB", "ftp://localhost:8000"),
            ("AWS_ENDPOINT_URL_DYNAMODB", "http://"),
            ("AWS_ENDPOINT_URL", "not a url"),
        ] {
            let e = endpoint(&[(name, bad)]).unwrap_err();
            assert_eq!(e.variable(), name);
            assert_eq!(
                e.to_string(),
                format!("{name}: {bad:?} is not an http(s) URL (such as http://localhost:8000)")
            );
        }
    }

    #[test]
    fn a_missing_region_is_named() {
        let e = client_config(&shared(None, None), None).unwrap_err();
        assert_eq!(e.variable(), "AWS_REGION");
        assert_eq!(
            e.to_string(),
            "AWS_REGION: not set, and no region in the AWS profile: the SDK cannot sign requests without one"
        );
        assert!(client_config(&shared(Some("eu-west-1"), None), None).is_ok());
    }
}
