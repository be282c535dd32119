//! Root tests: nftables transactions through `nft -f -` inside a test
//! namespace — apply, typed read-back, atomic failure, delete, list.

mod common;

use common::{kernel_in, netns};
use twill_integration::require_root;
use twill_kernel::{KernelError, KernelExt, NftTableId};

fn table_name() -> String {
    // nft table names share the harness's `twt` prefix (leak checker).
    common::link_name()
}

fn ruleset(table: &str) -> String {
    format!(
        "add table inet {table}
add chain inet {table} input {{ type filter hook input priority filter; policy accept; }}
add chain inet {table} tw-fw-a
add set inet {table} pods {{ type ipv4_addr; flags interval; }}
add map inet {table} dispatch {{ type ifname : verdict; }}
add element inet {table} pods {{ 10.65.0.0/26, 192.0.2.1 }}
add element inet {table} dispatch {{ \"twa\" : goto tw-fw-a }}
add rule inet {table} input iifname vmap @dispatch comment \"twl:dispatch\"
add rule inet {table} input ip saddr @pods counter accept comment \"twl:pods\"
add rule inet {table} tw-fw-a drop comment \"twl:drop\"
"
    )
}

#[test]
fn applied_ruleset_reads_back_as_a_typed_table() {
    require_root!();
    let ns = netns("nft");
    let kernel = kernel_in(&ns);
    let table = table_name();
    kernel.nft_apply(&ruleset(&table)).wait().expect("apply");
    let read = kernel
        .nft_read_table("inet", &table)
        .wait()
        .expect("read back");
    assert_eq!(
        read.rule_comments("input"),
        vec![Some("twl:dispatch"), Some("twl:pods")]
    );
    assert_eq!(read.rule_comments("tw-fw-a"), vec![Some("twl:drop")]);
    let input = read
        .chain("input")
        .and_then(|c| c.base.clone())
        .expect("base chain");
    assert_eq!(
        (input.hook.as_str(), input.priority, input.policy.as_str()),
        ("input", 0, "accept")
    );
    assert_eq!(
        read.set("pods").expect("set").elements,
        vec!["10.65.0.0/26", "192.0.2.1"]
    );
    assert_eq!(
        read.set("dispatch").expect("map").elements,
        vec!["twa : goto tw-fw-a"]
    );
    let tables = kernel.nft_list_tables().wait().expect("list");
    assert_eq!(tables, vec![NftTableId::new("inet", &table)]);
    kernel
        .nft_delete_table("inet", &table)
        .wait()
        .expect("delete");
    assert!(
        kernel
            .nft_read_table("inet", &table)
            .wait()
            .expect_err("gone")
            .is_not_found()
    );
    assert!(
        kernel
            .nft_delete_table("inet", &table)
            .wait()
            .expect_err("gone")
            .is_not_found()
    );
}

#[test]
fn a_transaction_whose_last_line_is_bad_changes_nothing() {
    require_root!();
    let ns = netns("nft");
    let kernel = kernel_in(&ns);
    let table = table_name();
    kernel.nft_apply(&ruleset(&table)).wait().expect("apply");
    let before = kernel.nft_read_table("inet", &table).wait().expect("read");
    let other = table_name();
    let bad = format!(
        "flush chain inet {table} input
add rule inet {table} input drop comment \"twl:new\"
add element inet {table} pods {{ 10.99.0.1 }}
add table inet {other}
add rule inet {table} input jump no-such-chain"
    );
    let err = kernel.nft_apply(&bad).wait().expect_err("last line is bad");
    match &err {
        KernelError::Nft { stderr, .. } => assert!(
            stderr.contains("no-such-chain"),
            "stderr names the problem: {stderr}"
        ),
        other => panic!("expected an nft error, got {other}"),
    }
    let after = kernel.nft_read_table("inet", &table).wait().expect("read");
    assert_eq!(
        after, before,
        "a failed transaction leaves the table as it was"
    );
    assert!(
        kernel
            .nft_read_table("inet", &other)
            .wait()
            .expect_err("never created")
            .is_not_found()
    );
}

#[test]
fn nft_runs_inside_the_namespace_not_on_the_host() {
    require_root!();
    let ns = netns("nft");
    let kernel = kernel_in(&ns);
    let table = table_name();
    kernel
        .nft_apply(&format!("add table inet {table}"))
        .wait()
        .expect("apply");
    let host = std::process::Command::new("nft")
        .args(["list", "tables"])
        .output()
        .expect("nft on host");
    assert!(
        !String::from_utf8_lossy(&host.stdout).contains(&table),
        "table leaked into the host namespace"
    );
    let inside = ns
        .exec("nft", &["list", "tables"])
        .expect("nft in namespace");
    assert!(String::from_utf8_lossy(&inside.stdout).contains(&table));
}

#[test]
fn a_missing_nft_binary_is_reported_by_path() {
    require_root!();
    let ns = netns("nft");
    let config = twill_kernel::NftConfig {
        binary: "/nonexistent/nft".into(),
    };
    let kernel = twill_kernel::NetlinkKernel::open(&common::path(&ns), config).expect("kernel");
    let err = kernel.nft_list_tables().wait().expect_err("no binary");
    assert!(err.to_string().contains("/nonexistent/nft"), "{err}");
}
