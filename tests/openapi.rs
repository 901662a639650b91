//! `GET /api/openapi.json` against the service it describes: the document is well-formed
//! OpenAPI 3.1; its operations are exactly the routes declared in `src/web/mod.rs` (read from the
//! source, both directions) and exactly what the running server answers (every documented
//! method is routed, every other one is a 405); its roles are the ones the server enforces; every
//! documented query parameter is one the endpoint accepts (and `format=csv|parquet` answers in
//! its documented media type); and real answers — successes and errors, after real data went
//! in — match the documented schemas field for field, with money as exact decimal strings.
//!
//! The schema check is deliberately stricter than JSON Schema: an object schema that lists
//! properties is closed, so a field the server sends but the document does not describe fails.

#[macro_use]
mod common;

use std::collections::{BTreeMap, BTreeSet};

use chrono::{Duration, SecondsFormat, Utc};
use common::{start_with, TestServer};
use regex::Regex;
use serde_json::{json, Value};

const ADMIN: &str = "bootstrap-admin-key-0123456789";
const ROUTER_SOURCE: &str = "src/web/mod.rs";
/// The methods the router's method routers can declare.
const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];
/// What a path parameter is replaced with when probing: no such thing exists.
const DUMMY_ID: &str = "probe-doesnotexist";

// ---------------------------------------------------------------------------------------------
// The document
// ---------------------------------------------------------------------------------------------

async fn server() -> TestServer {
    start_with(|c| c.admin_key = Some(ADMIN.into())).await
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// The document as served, fetched without a key (it is public).
async fn fetch_document(srv: &TestServer) -> Value {
    let resp = client()
        .get(srv.url("/api/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200, "the document is public");
    assert_eq!(essence(&resp), "application/json");
    resp.json().await.unwrap()
}

/// A JSON pointer (`#/components/schemas/Money`) into the document.
fn pointer<'a>(doc: &'a Value, reference: &str) -> Option<&'a Value> {
    doc.pointer(reference.strip_prefix('#')?)
}

/// Follows `$ref`s to the value they name.
fn resolve<'a>(doc: &'a Value, mut v: &'a Value) -> &'a Value {
    for _ in 0..16 {
        match v.get("$ref").and_then(Value::as_str) {
            Some(r) => v = pointer(doc, r).unwrap_or_else(|| panic!("unresolved $ref {r}")),
            None => return v,
        }
    }
    panic!("a $ref cycle");
}

/// Every (method, path template) the document describes.
fn documented(doc: &Value) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            out.insert((method.clone(), path.clone()));
        }
    }
    out
}

fn operation<'a>(doc: &'a Value, method: &str, path: &str) -> &'a Value {
    let op = &doc["paths"][path][method];
    assert!(op.is_object(), "{method} {path} is not documented");
    op
}

fn essence(resp: &reqwest::Response) -> String {
    resp.headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// The documented answer for a status: its media types and the JSON schema, if any.
fn documented_answer<'a>(
    doc: &'a Value,
    method: &str,
    path: &str,
    status: u16,
) -> Option<&'a Value> {
    operation(doc, method, path)["responses"]
        .get(status.to_string())
        .map(|r| resolve(doc, r))
}

#[tokio::test]
async fn the_document_is_well_formed_openapi_3_1() {
    let srv = server().await;
    let doc = fetch_document(&srv).await;
    assert_eq!(doc, tally::web::openapi::document(), "served as built");
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1."));
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
    assert!(doc["info"]["title"].is_string());

    // Every $ref anywhere resolves inside the document.
    fn refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
        match v {
            Value::Object(m) => {
                if let Some(r) = m.get("$ref").and_then(Value::as_str) {
                    out.push(r);
                }
                m.values().for_each(|x| refs(x, out));
            }
            Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
            _ => {}
        }
    }
    let mut all = Vec::new();
    refs(&doc, &mut all);
    assert!(all.len() > 100, "the document is built from shared pieces");
    for r in &all {
        assert!(pointer(&doc, r).is_some(), "$ref {r} does not resolve");
    }

    let schemes = doc["components"]["securitySchemes"].as_object().unwrap();
    assert_eq!(schemes["apiKey"]["scheme"], "bearer");
    assert_eq!(schemes["session"]["in"], "cookie");
    assert_eq!(schemes["session"]["name"], "tally_session");

    let brace = Regex::new(r"\{([^}]+)\}").unwrap();
    let mut ids = BTreeSet::new();
    for (method, path) in documented(&doc) {
        let op = operation(&doc, &method, &path);
        let at = format!("{method} {path}");
        assert!(
            ids.insert(op["operationId"].as_str().unwrap()),
            "{at}: operationId twice"
        );
        assert!(op["summary"].is_string(), "{at}: summary");
        let responses = op["responses"].as_object().unwrap();
        assert!(!responses.is_empty(), "{at}: no responses");
        assert!(
            responses.keys().any(|s| s.starts_with('2') || s == "303"),
            "{at}: no success answer"
        );
        for r in responses.values() {
            assert!(
                resolve(&doc, r)["description"].is_string(),
                "{at}: a response without a description"
            );
        }
        let role = op["x-tally-role"].as_str().unwrap();
        assert!(
            role == "public"
                || role
                    .split('|')
                    .all(|r| ["ingest", "read", "admin"].contains(&r)),
            "{at}: role {role}"
        );
        assert!(
            op["description"].as_str().unwrap().contains("Needs"),
            "{at}: the role in words"
        );
        assert_eq!(
            op["security"] == json!([]),
            role == "public",
            "{at}: security and role agree"
        );

        // Path parameters: every `{x}` declared (required, in path), and nothing else.
        let in_path: BTreeSet<String> = brace
            .captures_iter(&path)
            .map(|c| c[1].to_string())
            .collect();
        let mut declared = BTreeSet::new();
        let mut names = BTreeSet::new();
        for p in op["parameters"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or(&[])
        {
            let p = resolve(&doc, p);
            let name = p["name"].as_str().unwrap();
            let place = p["in"].as_str().unwrap();
            assert!(
                ["query", "path", "header"].contains(&place),
                "{at}: {name} in {place}"
            );
            assert!(
                names.insert((name.to_string(), place.to_string())),
                "{at}: {name} twice"
            );
            assert!(p["schema"].is_object(), "{at}: {name} without a schema");
            if place == "path" {
                assert_eq!(
                    p["required"], true,
                    "{at}: path parameter {name} must be required"
                );
                declared.insert(name.to_string());
            }
        }
        assert_eq!(in_path, declared, "{at}: path parameters");
    }
    srv.stop().await;
}

// ---------------------------------------------------------------------------------------------
// The router's source
// ---------------------------------------------------------------------------------------------

/// The source with `//` comments blanked out (string literals kept whole).
fn without_comments(src: &str) -> String {
    let mut out = String::with_capacity(src.len());
    let mut chars = src.chars().peekable();
    let mut in_string = false;
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            if c == '\\' {
                if let Some(n) = chars.next() {
                    out.push(n);
                }
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
            out.push(c);
        } else if c == '/' && chars.peek() == Some(&'/') {
            for n in chars.by_ref() {
                if n == '\n' {
                    out.push('\n');
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Every `.route("PATH", get(…).post(…)…)` of a router source, as (method, path), and how many
/// `.route(` calls there were.
fn parse_routes(src: &str) -> (BTreeSet<(String, String)>, usize) {
    let src = without_comments(src);
    let bytes = src.as_bytes();
    let mut out = BTreeSet::new();
    let mut calls = 0;
    for (start, _) in src.match_indices(".route(") {
        calls += 1;
        let mut i = start + ".route(".len();
        while bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        assert_eq!(
            bytes[i], b'"',
            "a route path that is not a literal at byte {start}"
        );
        let end = i + 1 + src[i + 1..].find('"').unwrap();
        let path = src[i + 1..end].to_string();
        i = end + 1;
        while bytes[i].is_ascii_whitespace() || bytes[i] == b',' {
            i += 1;
        }
        // The method router: the names called at its own depth, first or after a `.`
        // (`get(api::budgets::get).put(…)`: `get` and `put`, not the handler's `get`).
        let mut depth = 0usize;
        let mut methods = Vec::new();
        let mut previous = b'.';
        let mut j = i;
        loop {
            let c = bytes[j];
            if c == b'(' {
                depth += 1;
            } else if c == b')' {
                if depth == 0 {
                    break;
                }
                depth -= 1;
            } else if depth == 0 && (c.is_ascii_alphabetic() || c == b'_') {
                let word_end = j + src[j..]
                    .find(|ch: char| !(ch.is_ascii_alphanumeric() || ch == '_'))
                    .unwrap();
                let next = src[word_end..].trim_start().as_bytes()[0];
                if previous == b'.' && next == b'(' {
                    methods.push(src[j..word_end].to_string());
                }
                j = word_end;
                previous = b'w';
                continue;
            }
            if !c.is_ascii_whitespace() {
                previous = c;
            }
            j += 1;
        }
        assert!(!methods.is_empty(), "{path}: no method found");
        for m in methods {
            assert!(
                METHODS.contains(&m.as_str()),
                "{path}: method router {m}() is not one this test knows"
            );
            assert!(out.insert((m, path.clone())), "{path} declared twice");
        }
    }
    (out, calls)
}

/// The routes of `src/web/mod.rs`.
fn declared_routes() -> BTreeSet<(String, String)> {
    let (routes, calls) = parse_routes(&std::fs::read_to_string(ROUTER_SOURCE).unwrap());
    assert!(
        calls > 40,
        "found only {calls} .route( calls: the parser is broken"
    );
    routes
}

#[test]
fn the_route_parser_reads_chained_method_routers() {
    let src = r#"
        // .route("/commented", get(x))
        let r = Router::new()
            .route("/a", get(api::a::get))
            .route(
                "/b/{id}",
                get(api::b::get)
                    .put(api::b::replace)
                    .delete(api::b::delete), // a comment with .route("/c", post(y))
            )
            .route("/d", post(|| async { "x" }))
            .route_layer(middleware::from_fn(f));
    "#;
    let (found, calls) = parse_routes(src);
    let expected: BTreeSet<(String, String)> = [
        ("get", "/a"),
        ("get", "/b/{id}"),
        ("put", "/b/{id}"),
        ("delete", "/b/{id}"),
        ("post", "/d"),
    ]
    .iter()
    .map(|(m, p)| (m.to_string(), p.to_string()))
    .collect();
    assert_eq!((found, calls), (expected, 3));
    let twice = format!("{src}{src}");
    assert!(
        std::panic::catch_unwind(|| parse_routes(&twice)).is_err(),
        "a route declared twice is refused"
    );
}

fn rust_files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn routes_are_declared_only_in_the_router_source() {
    let mut files = Vec::new();
    rust_files(std::path::Path::new("src"), &mut files);
    assert!(files.len() > 50);
    let router = std::path::Path::new(ROUTER_SOURCE);
    for f in files {
        let text = without_comments(&std::fs::read_to_string(&f).unwrap());
        for needle in [".nest(", ".nest_service(", ".route_service("] {
            assert!(
                !text.contains(needle),
                "{}: {needle} adds routes this test cannot read",
                f.display()
            );
        }
        if f != router {
            for needle in [".route(", "Router::new"] {
                assert!(
                    !text.contains(needle),
                    "{}: {needle} outside {ROUTER_SOURCE}",
                    f.display()
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The document against the router and the running server
// ---------------------------------------------------------------------------------------------

async fn create_key(srv: &TestServer, role: &str) -> String {
    let resp = client()
        .post(srv.url("/api/v1/keys"))
        .bearer_auth(ADMIN)
        .json(&json!({"name": format!("probe-{role}"), "role": role, "project": "default"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 201);
    let v: Value = resp.json().await.unwrap();
    v["secret"].as_str().unwrap().to_string()
}

/// A request with no body (or an empty one): harmless everywhere, since the routes that change
/// things need a body, a form, or an id that exists.
async fn probe(srv: &TestServer, method: &str, path: &str, key: Option<&str>) -> reqwest::Response {
    let m = reqwest::Method::from_bytes(method.to_ascii_uppercase().as_bytes()).unwrap();
    let mut rb = client().request(m, srv.url(&path.replace("{id}", DUMMY_ID)));
    if let Some(k) = key {
        rb = rb.bearer_auth(k);
    }
    rb.send().await.unwrap()
}

async fn is_fallback(resp: reqwest::Response) -> (u16, bool, String) {
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    let fallback = status == 404
        && serde_json::from_str::<Value>(&text)
            .is_ok_and(|v| v["error"]["message"] == "no such endpoint");
    (status, fallback, text)
}

#[tokio::test]
async fn the_document_and_the_router_agree() {
    // Both directions against the source: every declared route is documented, and every
    // documented operation is a declared route.
    let declared = declared_routes();
    let srv = server().await;
    let doc = fetch_document(&srv).await;
    let described = documented(&doc);
    let undocumented: Vec<_> = declared.difference(&described).collect();
    assert!(
        undocumented.is_empty(),
        "routes without documentation: {undocumented:?}"
    );
    let unrouted: Vec<_> = described.difference(&declared).collect();
    assert!(
        unrouted.is_empty(),
        "documented operations without a route: {unrouted:?}"
    );

    // And against the running server: a documented operation is routed (never the fallback's
    // 404 or a 405), and its 2xx answers come in a documented media type.
    for (method, path) in &described {
        let resp = probe(&srv, method, path, Some(ADMIN)).await;
        let media = essence(&resp);
        let (status, fallback, text) = is_fallback(resp).await;
        assert!(
            !fallback && status != 405,
            "{method} {path}: {status} {text}"
        );
        if (200..300).contains(&status) {
            let answer = documented_answer(&doc, method, path, status)
                .unwrap_or_else(|| panic!("{method} {path}: {status} is not documented"));
            assert!(
                answer["content"].get(&media).is_some(),
                "{method} {path}: {status} came as {media}, documented {}",
                answer["content"]
            );
        }
    }
    // Every other method of a documented path is a 405.
    let paths: BTreeSet<&String> = described.iter().map(|(_, p)| p).collect();
    for path in paths {
        for method in METHODS {
            if described.contains(&(method.to_string(), path.clone())) {
                continue;
            }
            let (status, _, text) = is_fallback(probe(&srv, method, path, Some(ADMIN)).await).await;
            assert_eq!(
                status, 405,
                "{method} {path} is not documented, yet answers {status} {text}"
            );
        }
    }
    srv.stop().await;
}

#[tokio::test]
async fn the_documented_roles_are_the_enforced_ones() {
    let srv = server().await;
    let doc = fetch_document(&srv).await;
    let read = create_key(&srv, "read").await;
    let ingest = create_key(&srv, "ingest").await;
    for (method, path) in documented(&doc) {
        let op = operation(&doc, &method, &path);
        let role = op["x-tally-role"].as_str().unwrap();
        let responses = op["responses"].as_object().unwrap();
        let at = format!("{method} {path} ({role})");

        let resp = probe(&srv, &method, &path, None).await;
        let location = resp
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|l| l.to_str().ok())
            .unwrap_or("")
            .to_string();
        let status = resp.status().as_u16();
        let to_signin = status == 303 && location.starts_with("/signin");
        if role == "public" {
            assert!(
                status != 401 && !to_signin,
                "{at}: without a key {status} {location}"
            );
        } else {
            assert!(
                status == 401 || to_signin,
                "{at}: without a key {status} {location}"
            );
            assert!(
                responses.contains_key(&status.to_string()),
                "{at}: {status} undocumented"
            );
        }

        for (name, key) in [("read", &read), ("ingest", &ingest)] {
            let status = probe(&srv, &method, &path, Some(key))
                .await
                .status()
                .as_u16();
            let allowed = role == "public" || role.split('|').any(|r| r == name);
            if allowed {
                assert!(
                    status != 401 && status != 403,
                    "{at}: a {name} key got {status}"
                );
            } else {
                assert_eq!(status, 403, "{at}: a {name} key got {status}");
                assert!(responses.contains_key("403"), "{at}: 403 undocumented");
            }
        }
    }
    srv.stop().await;
}

/// A parameter's example as query text (`["feature", "model"]` → `feature,model`).
fn example_text(example: &Value) -> String {
    match example {
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(example_text).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

#[tokio::test]
async fn every_documented_query_parameter_is_accepted() {
    let srv = server().await;
    let doc = fetch_document(&srv).await;
    let mut checked = 0;
    for (method, path) in documented(&doc) {
        if method != "get" {
            continue;
        }
        let op = operation(&doc, &method, &path);
        let params: Vec<&Value> = op["parameters"]
            .as_array()
            .map(|a| a.iter().map(|p| resolve(&doc, p)).collect())
            .unwrap_or_default();
        let query: Vec<&Value> = params
            .iter()
            .copied()
            .filter(|p| p["in"] == "query")
            .collect();
        let required: Vec<(String, String)> = query
            .iter()
            .filter(|p| p["required"] == true)
            .map(|p| {
                (
                    p["name"].as_str().unwrap().to_string(),
                    example_text(&p["example"]),
                )
            })
            .collect();
        for p in &query {
            let name = p["name"].as_str().unwrap();
            assert!(
                !p["example"].is_null(),
                "{method} {path}: {name} has no example"
            );
            assert_valid(
                &doc,
                &p["schema"],
                &p["example"],
                &format!("{method} {path}: the example of {name}"),
            );
            // The example; for `format`, every file type, each in its documented media type.
            let values: Vec<String> = match p["schema"]["enum"].as_array() {
                Some(all) if name == "format" => all.iter().map(example_text).collect(),
                _ => vec![example_text(&p["example"])],
            };
            for value in values {
                let mut pairs = required.clone();
                pairs.retain(|(k, _)| k != name);
                pairs.push((name.to_string(), value));
                let resp = client()
                    .get(srv.url(&path.replace("{id}", DUMMY_ID)))
                    .query(&pairs)
                    .bearer_auth(ADMIN)
                    .send()
                    .await
                    .unwrap();
                let media = essence(&resp);
                let (status, fallback, text) = is_fallback(resp).await;
                assert!(
                    [200, 303, 404].contains(&status) && !fallback,
                    "{method} {path}?{pairs:?}: {status} {text}"
                );
                let documented = documented_answer(&doc, &method, &path, status)
                    .unwrap_or_else(|| panic!("{method} {path}: {status} is not documented"));
                assert!(
                    status == 303 || documented["content"].get(&media).is_some(),
                    "{method} {path}?{pairs:?}: {status} came as {media}"
                );
            }
            checked += 1;
        }
    }
    assert!(checked > 150, "checked only {checked} parameters");
    srv.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Answers against their schemas
// ---------------------------------------------------------------------------------------------

fn json_type(v: &Value, t: &str) -> bool {
    match t {
        "null" => v.is_null(),
        "boolean" => v.is_boolean(),
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        "string" => v.is_string(),
        "array" => v.is_array(),
        "object" => v.is_object(),
        other => panic!("unknown type {other}"),
    }
}

/// Validates `v` against a JSON Schema of the document: the keywords the document uses, with
/// objects that list properties closed (see the module docs).
fn validate(doc: &Value, schema: &Value, v: &Value, at: &str, errors: &mut Vec<String>) {
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        let target = pointer(doc, r).unwrap_or_else(|| panic!("unresolved $ref {r}"));
        return validate(doc, target, v, at, errors);
    }
    let branch_errors = |b: &Value| {
        let mut e = Vec::new();
        validate(doc, b, v, at, &mut e);
        e
    };
    if let Some(branches) = schema.get("anyOf").and_then(Value::as_array) {
        let all: Vec<Vec<String>> = branches.iter().map(branch_errors).collect();
        if all.iter().all(|e| !e.is_empty()) {
            errors.push(format!("{at}: matches no anyOf branch: {all:?}"));
        }
    }
    if let Some(branches) = schema.get("oneOf").and_then(Value::as_array) {
        let all: Vec<Vec<String>> = branches.iter().map(branch_errors).collect();
        let matching = all.iter().filter(|e| e.is_empty()).count();
        if matching != 1 {
            errors.push(format!("{at}: matches {matching} oneOf branches: {all:?}"));
        }
    }
    if let Some(t) = schema.get("type") {
        let types: Vec<&str> = match t {
            Value::String(s) => vec![s.as_str()],
            Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
            other => panic!("type {other}"),
        };
        if !types.iter().any(|t| json_type(v, t)) {
            errors.push(format!("{at}: {v} is not {types:?}"));
            return;
        }
    }
    if let Some(values) = schema.get("enum").and_then(Value::as_array) {
        if !values.contains(v) {
            errors.push(format!("{at}: {v} is not one of {values:?}"));
        }
    }
    if let Some(c) = schema.get("const") {
        if c != v {
            errors.push(format!("{at}: {v} is not {c}"));
        }
    }
    match v {
        Value::String(s) => {
            if let Some(p) = schema.get("pattern").and_then(Value::as_str) {
                if !Regex::new(p).unwrap().is_match(s) {
                    errors.push(format!("{at}: {s:?} does not match {p}"));
                }
            }
            match schema.get("format").and_then(Value::as_str) {
                Some("date-time") if chrono::DateTime::parse_from_rfc3339(s).is_err() => {
                    errors.push(format!("{at}: {s:?} is not an RFC 3339 date-time"))
                }
                Some("date") if chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_err() => {
                    errors.push(format!("{at}: {s:?} is not a date"))
                }
                _ => {}
            }
        }
        Value::Array(items) => {
            if let Some(item) = schema.get("items") {
                for (i, x) in items.iter().enumerate() {
                    validate(doc, item, x, &format!("{at}[{i}]"), errors);
                }
            }
        }
        Value::Object(m) => {
            let properties = schema.get("properties").and_then(Value::as_object);
            let patterns: Vec<(Regex, &Value)> = schema
                .get("patternProperties")
                .and_then(Value::as_object)
                .map(|p| p.iter().map(|(k, s)| (Regex::new(k).unwrap(), s)).collect())
                .unwrap_or_default();
            for r in schema
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let r = r.as_str().unwrap();
                if !m.contains_key(r) {
                    errors.push(format!("{at}: {r} is missing"));
                }
            }
            for (k, x) in m {
                let here = format!("{at}.{k}");
                if let Some(s) = properties.and_then(|p| p.get(k)) {
                    validate(doc, s, x, &here, errors);
                    continue;
                }
                let matched: Vec<&&Value> = patterns
                    .iter()
                    .filter(|(re, _)| re.is_match(k))
                    .map(|(_, s)| s)
                    .collect();
                if !matched.is_empty() {
                    for s in matched {
                        validate(doc, s, x, &here, errors);
                    }
                    continue;
                }
                match schema.get("additionalProperties") {
                    Some(Value::Bool(true)) => {}
                    Some(Value::Bool(false)) => errors.push(format!("{here}: not allowed")),
                    Some(s) => validate(doc, s, x, &here, errors),
                    None if properties.is_some() || !patterns.is_empty() => errors.push(format!(
                        "{here}: the server sends it, the document does not describe it"
                    )),
                    None => {}
                }
            }
        }
        _ => {}
    }
}

fn assert_valid(doc: &Value, schema: &Value, v: &Value, what: &str) {
    let mut errors = Vec::new();
    validate(doc, schema, v, "$", &mut errors);
    assert!(errors.is_empty(), "{what}:\n{}\n{v}", errors.join("\n"));
}

/// Calls the server and checks the body sent and the answer received against the document.
struct Checker<'a> {
    srv: &'a TestServer,
    doc: &'a Value,
    /// (method, path) → answers checked, to prove coverage.
    seen: BTreeMap<(String, String), BTreeSet<u16>>,
}

impl Checker<'_> {
    async fn call(
        &mut self,
        method: &str,
        template: &str,
        path: &str,
        body: Option<Value>,
        status: u16,
    ) -> Value {
        let op = operation(self.doc, method, template);
        let m = reqwest::Method::from_bytes(method.to_ascii_uppercase().as_bytes()).unwrap();
        let mut rb = client().request(m, self.srv.url(path)).bearer_auth(ADMIN);
        if let Some(b) = &body {
            let schema = &op["requestBody"]["content"]["application/json"]["schema"];
            assert!(
                schema.is_object(),
                "{method} {template}: no JSON body documented"
            );
            assert_valid(self.doc, schema, b, &format!("the body of {method} {path}"));
            rb = rb.json(b);
        }
        let resp = rb.send().await.unwrap();
        let got = resp.status().as_u16();
        let media = essence(&resp);
        let text = resp.text().await.unwrap();
        assert_eq!(got, status, "{method} {path}: {text}");
        assert_eq!(media, "application/json", "{method} {path}");
        let v: Value = serde_json::from_str(&text).unwrap();
        let answer = documented_answer(self.doc, method, template, status)
            .unwrap_or_else(|| panic!("{method} {template}: {status} is not documented"));
        let schema = &answer["content"]["application/json"]["schema"];
        assert!(
            schema.is_object(),
            "{method} {template}: {status} has no JSON schema"
        );
        assert_valid(self.doc, schema, &v, &format!("{method} {path} → {status}"));
        self.seen
            .entry((method.to_string(), template.to_string()))
            .or_default()
            .insert(status);
        v
    }

    async fn get(&mut self, template: &str, path: &str) -> Value {
        self.call("get", template, path, None, 200).await
    }
}

fn ts(t: chrono::DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

#[tokio::test]
async fn answers_match_the_documented_schemas() {
    let srv = start_with(|c| {
        c.admin_key = Some(ADMIN.into());
        c.alerts.timeout = "500ms".into();
    })
    .await;
    let doc = fetch_document(&srv).await;
    let mut c = Checker {
        srv: &srv,
        doc: &doc,
        seen: BTreeMap::new(),
    };
    let now = Utc::now();

    // Alerting first, so the spend below raises alerts.
    let channel = c
        .call(
            "post",
            "/api/v1/channels",
            "/api/v1/channels",
            Some(json!({"name": "oncall", "url": "http://127.0.0.1:9/hook"})),
            201,
        )
        .await;
    let channel_id = channel["id"].as_str().unwrap().to_string();
    let spare = c
        .call(
            "post",
            "/api/v1/channels",
            "/api/v1/channels",
            Some(json!({"name": "spare", "kind": "webhook", "url": "http://127.0.0.1:9/spare", "enabled": false})),
            201,
        )
        .await;
    let spare_id = spare["id"].as_str().unwrap().to_string();
    let monthly = c
        .call(
            "post",
            "/api/v1/budgets",
            "/api/v1/budgets",
            Some(json!({"name": "monthly", "period": "month", "tz": "Europe/Berlin", "amount": "10",
                        "thresholds": ["50", 80, "100"], "forecast": true, "scope": {"feature": ["search", "chat*"]},
                        "channels": ["oncall"]})),
            201,
        )
        .await;
    let monthly_id = monthly["id"].as_str().unwrap().to_string();
    c.call(
        "post",
        "/api/v1/budgets",
        "/api/v1/budgets",
        Some(json!({"name": "runaway", "run_cap": {"per": "run_id", "max_calls": 2, "max_cost": "100"}})),
        201,
    )
    .await;

    // Calls: a daily habit, a spike, a run with a retry through a gateway, an unpriced model,
    // and one record that is rejected.
    let mut events = Vec::new();
    for d in 2..=22 {
        events.push(
            json!({"id": format!("daily-{d}"), "timestamp": ts(now - Duration::days(d)),
            "provider": "openai", "model": "gpt-4o", "feature": "search", "user_id": "u1",
            "task_id": format!("t-{d}"), "cost": "1",
            "usage": {"input_tokens": 1000, "cache_read_tokens": 200, "output_tokens": 100}}),
        );
    }
    events.push(
        json!({"id": "spike", "timestamp": ts(now - Duration::days(1)), "provider": "openai",
        "model": "gpt-4o", "feature": "search", "user_id": "u1", "cost": "50",
        "usage": {"input_tokens": 50000, "output_tokens": 5000}}),
    );
    let t = now - Duration::hours(1);
    events.extend([
        json!({"id": "c-a", "timestamp": ts(t), "provider": "openai", "model": "gpt-4o-mini",
            "run_id": "run-1", "task_id": "task-1", "span_id": "s-a", "agent": "planner", "feature": "chat",
            "latency_ms": 900, "ttft_ms": 200, "usage": {"input_tokens": 500, "output_tokens": 50}}),
        json!({"id": "c-b", "timestamp": ts(t + Duration::seconds(1)), "provider": "openai",
            "model": "gpt-4o-mini", "run_id": "run-1", "task_id": "task-1", "span_id": "s-b",
            "parent_span_id": "s-a", "status": "error", "error_type": "rate_limit", "http_status": 429,
            "route": "openrouter", "usage": {"input_tokens": 10, "output_tokens": 0}}),
        json!({"id": "c-c", "timestamp": ts(t + Duration::seconds(2)), "provider": "openai",
            "model": "gpt-4o-mini", "run_id": "run-1", "task_id": "task-1", "parent_span_id": "s-a",
            "retry_of": "c-b", "route": "openrouter", "cost": "0.0042", "latency_ms": 1200,
            "usage": {"input_tokens": 400, "output_tokens": 80, "reasoning_tokens": 20}}),
        json!({"id": "mystery", "timestamp": ts(t), "model": "mystery-model-x", "feature": "search",
            "usage": {"input_tokens": 10, "output_tokens": 5}}),
        json!({"id": "bad", "model": "gpt-4o", "usage": {"input_tokens": 10, "cache_read_tokens": 500}}),
    ]);
    let answer = c
        .call(
            "post",
            "/v1/ingest",
            "/v1/ingest",
            Some(Value::Array(events.clone())),
            200,
        )
        .await;
    assert_eq!(answer["accepted"], events.len() - 1, "{answer}");
    assert_eq!(answer["rejected"].as_array().unwrap().len(), 1);
    let answer = c
        .call(
            "post",
            "/v1/outcomes",
            "/v1/outcomes",
            Some(json!([{"task_id": "task-1", "outcome": "success", "value": "12.50"},
                        {"task_id": "t-5", "outcome": "failure", "rework_cost": "4.00"},
                        {"task_id": "t-6", "outcome": "success", "timestamp": "2099-01-01T00:00:00Z"}])),
            200,
        )
        .await;
    assert_eq!(answer["rejected"].as_array().unwrap().len(), 1, "{answer}");
    c.call(
        "post",
        "/v1/traces",
        "/v1/traces",
        Some(json!({"resourceSpans": []})),
        200,
    )
    .await;
    let billing = client()
        .post(srv.url("/v1/billing?format=openai-costs&file_name=jan.json"))
        .bearer_auth(ADMIN)
        .header("content-type", "application/json")
        .body(
            std::fs::read("tests/fixtures/billing/openai-costs/costs-2026-01-01_03.json").unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(billing.status().as_u16(), 200);
    let billing: Value = billing.json().await.unwrap();
    let schema = &documented_answer(&doc, "post", "/v1/billing", 200).unwrap()["content"]
        ["application/json"]["schema"];
    assert_valid(&doc, schema, &billing, "POST /v1/billing");
    assert!(billing["accepted"].as_u64().unwrap() > 0, "{billing}");
    c.seen
        .entry(("post".into(), "/v1/billing".into()))
        .or_default()
        .insert(200);

    // Analytics, with and without grouping and buckets.
    for path in [
        "/api/v1/costs",
        "/api/v1/costs?group_by=feature,model&interval=day&tz=Europe/Berlin",
        "/api/v1/costs?group_by=tag&feature=search,&order=-requests&limit=2",
    ] {
        let v = c.get("/api/v1/costs", path).await;
        assert!(!v["rows"].as_array().unwrap().is_empty(), "{path}: {v}");
    }
    for path in [
        "/api/v1/tasks",
        "/api/v1/tasks?group_by=feature&interval=week",
    ] {
        let v = c.get("/api/v1/tasks", path).await;
        assert!(!v["rows"].as_array().unwrap().is_empty(), "{path}: {v}");
    }
    let runs = c.get("/api/v1/runs", "/api/v1/runs?order=-calls").await;
    assert!(!runs["runs"].as_array().unwrap().is_empty());
    let run = c.get("/api/v1/runs/{id}", "/api/v1/runs/run-1").await;
    assert_eq!(run["calls"].as_array().unwrap().len(), 3, "{run}");
    c.call("get", "/api/v1/runs/{id}", "/api/v1/runs/nope", None, 404)
        .await;
    let routes = c
        .get("/api/v1/routes", "/api/v1/routes?group_by=provider,model")
        .await;
    assert!(!routes["rows"].as_array().unwrap().is_empty());
    c.get(
        "/api/v1/whatif",
        "/api/v1/whatif?as_model=claude-sonnet-4-5&group_by=model&interval=day",
    )
    .await;
    c.call(
        "post",
        "/api/v1/whatif",
        "/api/v1/whatif?group_by=model",
        Some(json!({"map": [{"from": "gpt-*", "to": "claude-sonnet-4-5", "provider": "anthropic"}],
                    "custom": [{"name": "mine", "model": "mystery-*", "input_mtok": "1", "output_mtok": 2}],
                    "discounts": [{"multiplier": "0.9", "model": "gpt-4o"}]})),
        200,
    )
    .await;
    c.get("/api/v1/reprice", "/api/v1/reprice?group_by=model")
        .await;
    c.call(
        "post",
        "/api/v1/reprice",
        "/api/v1/reprice?apply=true",
        None,
        200,
    )
    .await;
    let unpriced = c.get("/api/v1/unpriced", "/api/v1/unpriced").await;
    assert!(
        !unpriced["rows"].as_array().unwrap().is_empty(),
        "{unpriced}"
    );
    let anomalies = c
        .get(
            "/api/v1/anomalies",
            "/api/v1/anomalies?dimensions=feature,model",
        )
        .await;
    assert!(
        !anomalies["anomalies"].as_array().unwrap().is_empty(),
        "{anomalies}"
    );
    let recon = c
        .get("/api/v1/reconciliation", "/api/v1/reconciliation")
        .await;
    assert!(!recon["rows"].as_array().unwrap().is_empty());
    c.get(
        "/api/v1/reconciliation",
        "/api/v1/reconciliation?group_by=project,model&provider=openai",
    )
    .await;
    let imports = c
        .get("/api/v1/billing/imports", "/api/v1/billing/imports")
        .await;
    assert_eq!(imports["imports"].as_array().unwrap().len(), 1);
    let rejects = c.get("/api/v1/rejects", "/api/v1/rejects").await;
    assert_eq!(rejects["rejects"].as_array().unwrap().len(), 2);
    c.call(
        "get",
        "/api/v1/costs",
        "/api/v1/costs?colour=red",
        None,
        400,
    )
    .await;

    // Budgets, alerts, channels, keys.
    c.get("/api/v1/budgets", "/api/v1/budgets").await;
    c.get(
        "/api/v1/budgets/{id}",
        &format!("/api/v1/budgets/{monthly_id}"),
    )
    .await;
    c.call(
        "put",
        "/api/v1/budgets/{id}",
        &format!("/api/v1/budgets/{monthly_id}"),
        Some(json!({"name": "monthly", "period": "month", "amount": "10", "split_by": "user_id", "channels": [channel_id]})),
        200,
    )
    .await;
    let status = c
        .get("/api/v1/budgets/status", "/api/v1/budgets/status")
        .await;
    for b in status["budgets"].as_array().unwrap() {
        assert!(!b["rows"].as_array().unwrap().is_empty(), "{b}");
    }
    let check = c
        .get(
            "/v1/budget-check",
            "/v1/budget-check?feature=search&user_id=u1&run_id=run-1",
        )
        .await;
    assert!(!check["budgets"].as_array().unwrap().is_empty(), "{check}");
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    let alerts = loop {
        let v = c.get("/api/v1/alerts", "/api/v1/alerts").await;
        let list = v["alerts"].as_array().unwrap();
        if list
            .iter()
            .any(|a| !a["deliveries"].as_array().unwrap().is_empty())
        {
            break v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no alert was raised: {v}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    let alert = alerts["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| !a["deliveries"].as_array().unwrap().is_empty())
        .unwrap();
    let alert_id = alert["id"].as_str().unwrap();
    c.call(
        "post",
        "/api/v1/alerts/{id}/redeliver",
        &format!("/api/v1/alerts/{alert_id}/redeliver"),
        None,
        202,
    )
    .await;
    c.get("/api/v1/channels", "/api/v1/channels").await;
    c.get(
        "/api/v1/channels/{id}",
        &format!("/api/v1/channels/{channel_id}"),
    )
    .await;
    let patched = c
        .call(
            "patch",
            "/api/v1/channels/{id}",
            &format!("/api/v1/channels/{spare_id}"),
            Some(json!({"rotate_secret": true, "enabled": true})),
            200,
        )
        .await;
    assert!(patched["secret"].is_string());
    c.call(
        "post",
        "/api/v1/channels/{id}/test",
        &format!("/api/v1/channels/{channel_id}/test"),
        None,
        200,
    )
    .await;
    c.call(
        "delete",
        "/api/v1/channels/{id}",
        &format!("/api/v1/channels/{spare_id}"),
        None,
        200,
    )
    .await;
    c.call(
        "delete",
        "/api/v1/budgets/{id}",
        &format!("/api/v1/budgets/{monthly_id}"),
        None,
        200,
    )
    .await;
    let key = c
        .call(
            "post",
            "/api/v1/keys",
            "/api/v1/keys",
            Some(json!({"name": "finance", "role": "read", "project": "default"})),
            201,
        )
        .await;
    c.get("/api/v1/keys", "/api/v1/keys").await;
    c.call(
        "delete",
        "/api/v1/keys/{id}",
        &format!("/api/v1/keys/{}", key["id"].as_str().unwrap()),
        None,
        200,
    )
    .await;
    c.get("/healthz", "/healthz").await;
    c.get("/readyz", "/readyz").await;
    c.get("/api/openapi.json", "/api/openapi.json").await;

    // Every operation with a JSON answer was checked at least once.
    for (method, path) in documented(&doc) {
        let op = operation(&doc, &method, &path);
        let json_success = op["responses"].as_object().unwrap().iter().any(|(s, r)| {
            s.starts_with('2')
                && resolve(&doc, r)["content"]
                    .get("application/json")
                    .is_some()
        });
        assert!(
            !json_success || c.seen.contains_key(&(method.clone(), path.clone())),
            "{method} {path}: its answer was never checked"
        );
    }
    srv.stop().await;
}
