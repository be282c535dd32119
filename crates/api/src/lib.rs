//! Twill's resource types: Calico's `projectcalico.org/v3` kinds, Kubernetes
//! `networking.k8s.io/v1` NetworkPolicy and Tigera's `operator.tigera.io/v1`
//! Installation, with Calico's field names, defaults and validation rules.
//!
//! This crate does no I/O (but for [`load::load_files`], a convenience):
//! it turns text into validated, typed resources and types into CRD schemas.
//!
//! # Loading
//!
//! [`load_str`] takes YAML (one or more documents) or JSON (one or more
//! values, or an array) and returns every [`Resource`] in it, or every error
//! in it ([`LoadErrors`]). Each document goes through:
//!
//! 1. **parse** — YAML via `serde-saphyr` (syntax errors carry line and
//!    column), JSON via `serde_json`; arrays and `List`/`<Kind>List`
//!    documents are expanded;
//! 2. **dispatch** on `apiVersion` and `kind` through the registry in
//!    [`resource`];
//! 3. **decode** into the kind's type: every type rejects unknown fields,
//!    and errors carry the field path, e.g.
//!    `spec.ingress[0].destination.ports[1]`;
//! 4. **default** — a namespaced kind without a namespace gets `default`;
//!    policies get `tier: default` and Calico's `types`; and so on;
//! 5. **validate** — Calico's (and for Kubernetes' NetworkPolicy, the API
//!    server's) rules, all violations collected with their paths.
//!
//! Errors name the source, the 1-based document number, the kind and name
//! when known, the field path and the reason. [`to_yaml`] and [`to_json`]
//! serialize back, `apiVersion` and `kind` first; loading what they write
//! gives the same resources.
//!
//! # Kinds
//!
//! Each kind is [`Object<XSpec>`](Object) where `XSpec: Spec`; the rule
//! model shared by policies lives in [`common`].

pub mod bgp;
pub mod common;
pub mod crd;
pub mod endpoint;
pub mod error;
pub mod felix;
pub mod installation;
pub mod ipam;
pub mod ippool;
pub mod k8s;
pub mod load;
pub mod networkset;
pub mod node;
pub mod object;
pub mod policy;
pub mod profile;
pub mod resource;
pub mod status;
pub mod tier;
pub mod validate;

pub use error::{LoadError, LoadErrorKind, LoadErrors};
pub use load::{load_files, load_str, to_json, to_yaml, to_yaml_documents};
pub use object::{Object, ObjectMeta, Spec};
pub use resource::{KINDS, KindInfo, Resource, find_kind, find_kind_by_name};
pub use validate::{FieldPath, Validate, Validator, Violation};
