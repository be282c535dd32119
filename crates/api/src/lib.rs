//! Twill's resource types: Calico's `projectcalico.org/v3` kinds, Kubernetes
//! `networking.k8s.io/v1` NetworkPolicy and Tigera's `operator.tigera.io/v1`
//! Installation, with Calico's field names, defaults and validation rules.
//!
//! This crate does no I/O: it turns text into validated, typed resources
//! (see `load`) and types into CRD schemas.

pub mod object;
pub mod validate;

pub use object::{Object, ObjectMeta, Spec};
pub use validate::{FieldPath, Validate, Validator, Violation};
