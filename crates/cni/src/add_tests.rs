//! ADD, DEL, CHECK, GC and STATUS against the recording kernel, an
//! in-memory datastore and a fake IPAM service.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use twill_api::status::{EndpointStatus, endpoint_status_file_name};
use twill_ipam::{AllocateRequest, AllocatedIp};
use twill_kernel::fake::RecordingKernel;
use twill_kernel::{
    KernelError, KernelExt, KernelObject, KernelOp, NetnsPath, RouteFilter, RouteKey, RouteProto,
};
use twill_store::{Datastore, Key, MemoryStore};

use super::*;
use crate::config::{Env, NetConf};
use crate::deps::{Deps, IpamService};
use crate::ops;

/// Hands out 10.65.0.N (and fd00::N); records holdings in the datastore as
/// the real service does (an IPAMHandle per handle), so CHECK can see them.
#[derive(Clone)]
struct FakeIpam {
    held: Arc<Mutex<BTreeMap<String, Vec<IpAddr>>>>,
    next: Arc<Mutex<u8>>,
    store: Arc<dyn Datastore>,
    exhausted: bool,
    down: bool,
}

fn handle_key(handle: &str) -> Key {
    Key::cluster(
        <twill_api::ipam::IPAMHandleSpec as twill_api::Spec>::STORE_KIND,
        handle,
    )
}

impl IpamService for FakeIpam {
    fn allocate(&mut self, request: AllocateRequest) -> Result<Vec<AllocatedIp>, CniError> {
        if self.exhausted {
            return Err(CniError::Ipam {
                operation: "allocate",
                handle: request.handle,
                reason: "no free addresses in any pool".into(),
            });
        }
        let mut next = self.next.lock().expect("lock");
        *next += 1;
        let mut ips: Vec<IpAddr> = Vec::new();
        if request.ipv4 > 0 {
            ips.push(format!("10.65.0.{next}").parse().expect("literal"));
        }
        if request.ipv6 > 0 {
            ips.push(format!("fd00::{next}").parse().expect("literal"));
        }
        self.held
            .lock()
            .expect("lock")
            .insert(request.handle.clone(), ips.clone());
        self.store
            .create(&handle_key(&request.handle), &serde_json::json!({}))
            .expect("fresh handle");
        Ok(ips
            .into_iter()
            .map(|ip| AllocatedIp {
                ip,
                pool: "default".into(),
                block: "10.65.0.0/26".into(),
                sequence: 1,
                borrowed: false,
            })
            .collect())
    }

    fn release_handle(&mut self, handle: &str) -> Result<Vec<IpAddr>, CniError> {
        let _ = self.store.delete(
            &handle_key(handle),
            twill_store::Precondition::Unconditional,
        );
        Ok(self
            .held
            .lock()
            .expect("lock")
            .remove(handle)
            .unwrap_or_default())
    }

    fn ping(&mut self) -> Result<(), CniError> {
        if self.down {
            Err(CniError::NotAvailable {
                reason: "ipam service socket: connection refused".into(),
            })
        } else {
            Ok(())
        }
    }
}

struct Harness {
    kernel: RecordingKernel,
    store: Arc<dyn Datastore>,
    ipam: FakeIpam,
    pod_ns: NetnsPath,
    status_dir: tempfile::TempDir,
}

impl Harness {
    fn new() -> Self {
        let kernel = RecordingKernel::new();
        let pod_ns = NetnsPath::from_path("/var/run/netns/pod1");
        kernel.add_netns(&pod_ns);
        let store: Arc<dyn Datastore> = Arc::new(MemoryStore::new(Duration::from_secs(60)));
        Self {
            ipam: FakeIpam {
                held: Arc::default(),
                next: Arc::default(),
                store: store.clone(),
                exhausted: false,
                down: false,
            },
            kernel,
            store,
            pod_ns,
            status_dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    fn deps(&self) -> Deps {
        Deps {
            host: Arc::new(self.kernel.clone()),
            ipam: Box::new(self.ipam.clone()),
            store: self.store.clone(),
            node: "node1".into(),
        }
    }

    fn conf(&self, extra: &str) -> NetConf {
        let dir = serde_json::to_string(self.status_dir.path()).expect("path");
        // Never the host's published MTU: a file tests may write.
        let mtu_file = serde_json::to_string(&self.status_dir.path().join("mtu")).expect("path");
        NetConf::parse(
            format!(
                r#"{{"cniVersion":"1.0.0","name":"twill","type":"twill-cni",
                   "endpoint_status_dir":{dir},"mtu_file":{mtu_file}{extra}}}"#
            )
            .as_bytes(),
        )
        .expect("valid conf")
    }

    fn no_wait(&self) -> NetConf {
        self.conf(r#","policy_setup_timeout":0"#)
    }

    fn env(&self, container: &str) -> Env {
        let vars: HashMap<&str, String> = HashMap::from([
            ("CNI_COMMAND", "ADD".to_string()),
            ("CNI_CONTAINERID", container.to_string()),
            ("CNI_NETNS", self.pod_ns.path().display().to_string()),
            ("CNI_IFNAME", "eth0".to_string()),
            (
                "CNI_ARGS",
                "K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web-0;TWILL_SERVICE_ACCOUNT=web".to_string(),
            ),
        ]);
        Env::from_lookup(|k| vars.get(k).cloned()).expect("valid env")
    }

    fn host_links(&self) -> Vec<String> {
        self.kernel
            .list_links(Some("twl"))
            .wait()
            .expect("lists")
            .into_iter()
            .map(|l| l.name)
            .collect()
    }

    fn pod_links(&self) -> Vec<String> {
        let pod = self.kernel.enter(&self.pod_ns).expect("pod netns");
        pod.list_links(None)
            .wait()
            .expect("lists")
            .into_iter()
            .map(|l| l.name)
            .filter(|n| n != "lo")
            .collect()
    }

    fn host_routes(&self) -> usize {
        self.kernel
            .list_routes(RouteFilter::protocol(RouteProto::TWILL_LOCAL))
            .wait()
            .expect("lists")
            .len()
    }

    fn endpoint(&self) -> Option<endpoint::StoredEndpoint> {
        endpoint::get(&*self.store, "shop", "node1-k8s-web--0-eth0").expect("reads")
    }

    fn held(&self) -> usize {
        self.ipam.held.lock().expect("lock").len()
    }

    fn assert_nothing_left(&self, why: &str) {
        assert!(self.host_links().is_empty(), "{why}: host veth left");
        assert!(self.pod_links().is_empty(), "{why}: pod interface left");
        assert_eq!(self.host_routes(), 0, "{why}: host route left");
        assert!(self.endpoint().is_none(), "{why}: endpoint left");
        assert_eq!(self.held(), 0, "{why}: allocation left");
    }

    fn write_status(&self, revision: u64) {
        let status = EndpointStatus {
            namespace: "shop".into(),
            name: "node1-k8s-web--0-eth0".into(),
            container_id: None,
            revision,
        };
        std::fs::write(
            self.status_dir
                .path()
                .join(endpoint_status_file_name("shop", "node1-k8s-web--0-eth0")),
            serde_json::to_vec(&status).expect("serializes"),
        )
        .expect("writes");
    }
}

fn injected(name: &str) -> KernelError {
    KernelError::Invalid {
        object: KernelObject::Interface(name.into()),
        reason: "injected".into(),
    }
}

#[test]
fn add_wires_the_pod_the_calico_way_and_records_the_endpoint() {
    let h = Harness::new();
    let result = add(&h.no_wait(), &h.env("c1"), &mut h.deps()).expect("ADD succeeds");

    let host_if = h.host_links();
    assert_eq!(host_if.len(), 1);
    let host_if = &host_if[0];
    assert_eq!(h.pod_links(), vec!["eth0".to_string()]);

    let writes: Vec<&str> = h.kernel.writes().iter().map(KernelOp::name).collect();
    let first = |name: &str| writes.iter().position(|w| *w == name).expect(name);
    assert!(first("create_veth") < first("write_sysctl"));
    assert!(first("write_sysctl") < first("add_address"));
    assert!(first("add_address") < first("add_route"));

    let link = h.kernel.get_link(host_if).wait().expect("host veth");
    assert_eq!(link.mac, Some(HOST_MAC));
    assert!(link.up);
    for (key, value) in host_sysctls(host_if, true, false) {
        assert_eq!(
            h.kernel.read_sysctl(&key).wait().expect("set"),
            value,
            "{key}"
        );
    }
    let routes = h
        .kernel
        .list_routes(RouteFilter::protocol(RouteProto::TWILL_LOCAL))
        .wait()
        .expect("lists");
    assert_eq!(routes[0].destination.to_string(), "10.65.0.1/32");

    let pod = h.kernel.enter(&h.pod_ns).expect("pod");
    let pod_routes: Vec<String> = pod
        .list_routes(RouteFilter::default())
        .wait()
        .expect("lists")
        .iter()
        .map(|r| r.destination.to_string())
        .collect();
    assert!(
        pod_routes.contains(&"169.254.1.1/32".to_string()),
        "{pod_routes:?}"
    );
    assert!(
        pod_routes.contains(&"0.0.0.0/0".to_string()),
        "{pod_routes:?}"
    );

    let wep = h.endpoint().expect("endpoint written").endpoint;
    assert_eq!(wep.spec.container_id, "c1");
    assert_eq!(wep.spec.interface_name, *host_if);
    assert_eq!(wep.spec.ip_networks, vec!["10.65.0.1/32".to_string()]);
    assert_eq!(wep.spec.profiles, vec!["kns.shop", "ksa.shop.web"]);
    assert_eq!(
        wep.metadata.labels["projectcalico.org/serviceaccount"],
        "web"
    );

    let json = result.to_json("1.0.0");
    assert_eq!(json["ips"][0]["address"], "10.65.0.1/32");
    assert_eq!(json["ips"][0]["interface"], 1);
    assert_eq!(json["interfaces"][1]["sandbox"], "/var/run/netns/pod1");
}

#[test]
fn dual_stack_adds_ipv6_with_the_host_link_local_gateway() {
    let h = Harness::new();
    let conf =
        h.conf(r#","policy_setup_timeout":0,"ipam":{"type":"twill-ipam","assign_ipv6":true}"#);
    let result = add(&conf, &h.env("c1"), &mut h.deps()).expect("ADD succeeds");
    let json = result.to_json("1.1.0");
    assert_eq!(json["ips"][1]["address"], "fd00::1/128");
    assert_eq!(json["ips"][1]["gateway"], "fe80::ecee:eeff:feee:eeee");
    assert_eq!(h.host_routes(), 2);
    ops::check(&conf, &h.env("c1"), &mut h.deps()).expect("CHECK passes after ADD");
}

#[test]
fn any_failure_midway_undoes_everything() {
    type Matcher = fn(&KernelOp) -> bool;
    let cases: &[(&str, Matcher)] = &[
        ("veth creation", |op| matches!(op, KernelOp::CreateVeth(_))),
        ("host sysctl", |op| {
            matches!(op, KernelOp::WriteSysctl { .. })
        }),
        (
            "host link up",
            |op| matches!(op, KernelOp::SetLinkUp { name, .. } if name.starts_with("twl")),
        ),
        ("pod address", |op| matches!(op, KernelOp::AddAddress(_))),
        (
            "pod route",
            |op| matches!(op, KernelOp::AddRoute(r) if r.protocol != RouteProto::TWILL_LOCAL),
        ),
        (
            "host route",
            |op| matches!(op, KernelOp::AddRoute(r) if r.protocol == RouteProto::TWILL_LOCAL),
        ),
    ];
    for (step, matcher) in cases {
        let h = Harness::new();
        h.kernel.fail_once(*matcher, injected(step));
        let err = add(&h.no_wait(), &h.env("c1"), &mut h.deps()).expect_err(step);
        assert_eq!(err.code(), 101, "{step}: {err}");
        h.assert_nothing_left(step);
    }
}

#[test]
fn an_exhausted_pool_fails_with_the_ipam_code_and_leaves_nothing() {
    let mut h = Harness::new();
    h.ipam.exhausted = true;
    let err = add(&h.no_wait(), &h.env("c1"), &mut h.deps()).expect_err("no addresses");
    assert_eq!(err.code(), 100);
    assert!(err.to_string().contains("no free addresses"), "{err}");
    h.assert_nothing_left("exhausted pool");
}

#[test]
fn add_fails_closed_when_policy_is_not_programmed_in_time() {
    let h = Harness::new();
    let conf = h.conf(r#","policy_setup_timeout":0.05"#);
    let err = add(&conf, &h.env("c1"), &mut h.deps()).expect_err("nobody programs policy");
    assert_eq!(err.code(), 103, "{err}");
    h.assert_nothing_left("policy timeout");
}

#[test]
fn add_returns_once_the_endpoint_is_reported_programmed() {
    let h = Harness::new();
    let conf = h.conf(r#","policy_setup_timeout":5"#);
    let dir = h.status_dir.path().to_path_buf();
    let store = h.store.clone();
    // Plays felix-rs: reports the endpoint's revision once it appears.
    let felix = std::thread::spawn(move || {
        for _ in 0..500 {
            if let Some(stored) =
                endpoint::get(&*store, "shop", "node1-k8s-web--0-eth0").expect("reads")
            {
                let status = EndpointStatus {
                    namespace: "shop".into(),
                    name: "node1-k8s-web--0-eth0".into(),
                    container_id: Some("c1".into()),
                    revision: stored.revision,
                };
                let file = dir.join(endpoint_status_file_name("shop", "node1-k8s-web--0-eth0"));
                std::fs::write(file, serde_json::to_vec(&status).expect("json")).expect("write");
                return true;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        false
    });
    add(&conf, &h.env("c1"), &mut h.deps()).expect("programmed in time");
    assert!(
        felix.join().expect("felix thread"),
        "felix saw the endpoint"
    );
}

#[test]
fn a_stale_status_does_not_release_the_wait() {
    let h = Harness::new();
    h.write_status(0);
    let conf = h.conf(r#","policy_setup_timeout":0.05"#);
    let err = add(&conf, &h.env("c1"), &mut h.deps()).expect_err("revision 0 is stale");
    assert_eq!(err.code(), 103);
}

#[test]
fn add_on_an_existing_interface_fails_and_changes_nothing() {
    let h = Harness::new();
    add(&h.no_wait(), &h.env("c1"), &mut h.deps()).expect("first ADD");
    let writes_before = h.kernel.writes().len();
    let err = add(&h.no_wait(), &h.env("c1"), &mut h.deps()).expect_err("second ADD");
    assert_eq!(err.code(), 104, "{err}");
    assert_eq!(h.kernel.writes().len(), writes_before, "no kernel writes");
    assert_eq!(h.held(), 1, "the first allocation stays");
    assert!(h.endpoint().is_some());
}

#[test]
fn add_into_a_missing_netns_is_an_unknown_container() {
    let h = Harness::new();
    let mut env = h.env("c1");
    env.netns = Some("/var/run/netns/gone".into());
    let err = add(&h.no_wait(), &env, &mut h.deps()).expect_err("no netns");
    assert_eq!(err.code(), 3, "{err}");
    assert_eq!(h.held(), 0);
}

#[test]
fn a_declared_endpoint_supplies_labels_and_is_restored_on_failure() {
    let h = Harness::new();
    let mut declared = twill_api::Object::new(
        "node1-k8s-web--0-eth0",
        Some("shop"),
        twill_api::endpoint::WorkloadEndpointSpec::default(),
    );
    declared.metadata.labels.insert("app".into(), "web".into());
    endpoint::put(&*h.store, &declared, None).expect("declared");
    let before = h.endpoint().expect("declared").raw;

    h.kernel.fail_once(
        |op| matches!(op, KernelOp::AddRoute(r) if r.protocol == RouteProto::TWILL_LOCAL),
        injected("route"),
    );
    add(&h.no_wait(), &h.env("c1"), &mut h.deps()).expect_err("injected failure");
    assert_eq!(h.endpoint().expect("restored").raw, before);

    add(&h.no_wait(), &h.env("c1"), &mut h.deps()).expect("ADD succeeds");
    let wep = h.endpoint().expect("written").endpoint;
    assert_eq!(wep.metadata.labels["app"], "web");
    assert_eq!(wep.spec.container_id, "c1");
}

#[test]
fn del_removes_everything_and_is_idempotent() {
    let h = Harness::new();
    add(&h.no_wait(), &h.env("c1"), &mut h.deps()).expect("ADD");
    for round in 0..3 {
        ops::del(&h.env("c1"), &mut h.deps()).expect("DEL succeeds");
        h.assert_nothing_left(&format!("after DEL #{round}"));
    }
}

#[test]
fn del_succeeds_without_a_netns_and_still_releases() {
    let h = Harness::new();
    add(&h.no_wait(), &h.env("c1"), &mut h.deps()).expect("ADD");
    let mut env = h.env("c1");
    env.netns = Some("/var/run/netns/gone".into());
    ops::del(&env, &mut h.deps()).expect("DEL with the netns gone");
    env.netns = None;
    ops::del(&env, &mut h.deps()).expect("DEL without CNI_NETNS");
    assert_eq!(h.held(), 0);
    assert!(h.endpoint().is_none());
    assert!(h.host_links().is_empty());
}

#[test]
fn a_late_del_of_an_old_sandbox_keeps_the_new_one_wired() {
    let h = Harness::new();
    add(&h.no_wait(), &h.env("new"), &mut h.deps()).expect("ADD of the new sandbox");
    let mut old = h.env("old");
    old.netns = None;
    ops::del(&old, &mut h.deps()).expect("DEL of the old sandbox");
    assert!(h.endpoint().is_some(), "endpoint of the new sandbox kept");
    assert_eq!(h.host_links().len(), 1, "veth kept");
    assert_eq!(h.held(), 1, "allocation of the new sandbox kept");
}

#[test]
fn check_passes_after_add_and_names_every_drift() {
    let h = Harness::new();
    let conf = h.no_wait();
    let result = add(&conf, &h.env("c1"), &mut h.deps()).expect("ADD");
    let mut with_prev = conf.clone();
    with_prev.prev_result = Some(result.to_json("1.0.0"));
    ops::check(&with_prev, &h.env("c1"), &mut h.deps()).expect("CHECK right after ADD");

    let host_if = h.host_links().remove(0);
    h.kernel
        .delete_route(RouteKey {
            destination: "10.65.0.1/32".parse().expect("literal"),
            table: twill_kernel::route::TABLE_MAIN,
            metric: None,
            protocol: Some(RouteProto::TWILL_LOCAL),
        })
        .wait()
        .expect("someone deletes the host route");
    let proxy_arp =
        twill_kernel::SysctlKey::interface("ipv4", "conf", &host_if, "proxy_arp").expect("key");
    h.kernel
        .write_sysctl(&proxy_arp, "0")
        .wait()
        .expect("someone flips a sysctl");

    let err = ops::check(&with_prev, &h.env("c1"), &mut h.deps()).expect_err("drift");
    assert_eq!(err.code(), 105);
    let text = err.to_string();
    assert!(text.contains("host route 10.65.0.1"), "{text}");
    assert!(text.contains("proxy_arp"), "{text}");

    ops::del(&h.env("c1"), &mut h.deps()).expect("DEL");
    let err = ops::check(&conf, &h.env("c1"), &mut h.deps()).expect_err("gone");
    assert!(
        err.to_string()
            .contains("endpoint shop/node1-k8s-web--0-eth0 is missing"),
        "{err}"
    );
}

#[test]
fn check_reports_a_released_allocation() {
    let h = Harness::new();
    add(&h.no_wait(), &h.env("c1"), &mut h.deps()).expect("ADD");
    h.ipam
        .clone()
        .release_handle("k8s-pod-network.c1")
        .expect("released behind our back");
    let err = ops::check(&h.no_wait(), &h.env("c1"), &mut h.deps()).expect_err("drift");
    assert!(
        err.to_string()
            .contains("ipam handle k8s-pod-network.c1 is missing"),
        "{err}"
    );
}

#[test]
fn gc_releases_only_attachments_not_listed() {
    let h = Harness::new();
    add(&h.no_wait(), &h.env("c1"), &mut h.deps()).expect("ADD");
    let keep = h.conf(r#","cni.dev/valid-attachments":[{"containerID":"c1","ifname":"eth0"}]"#);
    assert_eq!(ops::gc(&keep, &mut h.deps()).expect("GC"), 0);
    assert!(h.endpoint().is_some());
    let missing = h.conf("");
    let err = ops::gc(&missing, &mut h.deps()).expect_err("GC without the list");
    assert_eq!(err.code(), 7, "{err}");
    assert!(h.endpoint().is_some(), "a refused GC releases nothing");
    let none = h.conf(r#","cni.dev/valid-attachments":[]"#);
    assert_eq!(ops::gc(&none, &mut h.deps()).expect("GC"), 1);
    assert_eq!(h.held(), 0);
    assert!(h.endpoint().is_none());
    assert!(h.host_links().is_empty());
}

#[test]
fn status_is_ready_only_when_ipam_answers() {
    let mut h = Harness::new();
    ops::status(&mut h.deps()).expect("ready");
    h.ipam.down = true;
    let err = ops::status(&mut h.deps()).expect_err("ipam down");
    assert_eq!(err.code(), 50);
}

#[test]
fn the_mtu_comes_from_the_config_else_the_default_route_interface() {
    let h = Harness::new();
    add(&h.no_wait(), &h.env("c1"), &mut h.deps()).expect("ADD");
    assert_eq!(
        h.kernel
            .get_link(&h.host_links()[0])
            .wait()
            .expect("veth")
            .mtu,
        FALLBACK_MTU
    );

    let h = Harness::new();
    let conf = h.conf(r#","policy_setup_timeout":0,"mtu":9000"#);
    add(&conf, &h.env("c1"), &mut h.deps()).expect("ADD");
    assert_eq!(
        h.kernel
            .get_link(&h.host_links()[0])
            .wait()
            .expect("veth")
            .mtu,
        9000
    );
}

#[test]
fn the_published_mtu_is_used_when_the_config_sets_none() {
    let cases = [
        (r#","policy_setup_timeout":0"#, 1450),
        (r#","policy_setup_timeout":0,"mtu":9000"#, 9000),
    ];
    for (extra, want) in cases {
        let h = Harness::new();
        std::fs::write(h.status_dir.path().join("mtu"), "1450\n").expect("write");
        add(&h.conf(extra), &h.env("c1"), &mut h.deps()).expect("ADD");
        let mtu = h
            .kernel
            .get_link(&h.host_links()[0])
            .wait()
            .expect("veth")
            .mtu;
        assert_eq!(mtu, want, "{extra}");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("mtu");
    for (text, want) in [("1450\n", Some(1450)), ("garbage", None), ("100", None)] {
        std::fs::write(&file, text).expect("write");
        assert_eq!(published_mtu(&file), want, "{text:?}");
    }
    assert_eq!(published_mtu(&dir.path().join("absent")), None);
}

#[test]
fn rollback_undoes_in_reverse_order() {
    let h = Harness::new();
    let conf = h.conf(r#","policy_setup_timeout":0.02"#);
    add(&conf, &h.env("c1"), &mut h.deps()).expect_err("nobody programs policy");
    let writes: Vec<&str> = h.kernel.writes().iter().map(KernelOp::name).collect();
    let tail = &writes[writes.len() - 2..];
    assert_eq!(tail, ["delete_route", "delete_link"], "{writes:?}");
    h.assert_nothing_left("policy timeout");
}
