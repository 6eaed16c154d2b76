//! `licensectl cluster status` as a table.

use licensed::cluster::admin::ClusterStatus;

/// `cluster status` as a table: one line per member, the answering node's view.
pub fn render_status(status: &ClusterStatus) -> String {
    let show = |value: Option<u64>| value.map_or_else(|| "-".to_string(), |v| v.to_string());
    let mut out = format!(
        "node {} ({}), leader {}, term {}, last log {}, committed {}, applied {}, snapshot {}\n",
        status.node,
        status.state,
        show(status.leader),
        status.term,
        show(status.last_log_index),
        show(status.committed),
        show(status.applied),
        show(status.snapshot),
    );
    out.push_str(&format!(
        "{:<6} {:<8} {:<7} {:<22} {:<22} {:>9} {:>7} {:>9}\n",
        "ID", "ROLE", "LEADER", "RAFT", "API", "MATCHED", "LAG", "LAST ACK"
    ));
    for member in &status.members {
        let ack = member
            .last_ack_ms
            .map_or_else(|| "-".to_string(), |ms| format!("{ms} ms"));
        out.push_str(&format!(
            "{:<6} {:<8} {:<7} {:<22} {:<22} {:>9} {:>7} {:>9}\n",
            member.id,
            if member.voter { "voter" } else { "learner" },
            if status.leader == Some(member.id) {
                "*"
            } else {
                ""
            },
            member.addr.raft_addr,
            member.addr.api_addr,
            show(member.matched),
            show(member.lag),
            ack,
        ));
    }
    out
}
