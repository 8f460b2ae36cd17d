//! Compile-time metadata of a planned model: the Keras-style `SUMMARY` table and the Graphviz `DOT` graph.

use crate::hir::{Call, CallId, LayerId, Producer, ValueId};
use crate::plan::Plan;
use std::fmt::Write;

/// One row of the summary: a layer (or input) with its output shape, parameters and inbound tensors.
struct Row {
    name: String,
    shape: String,
    params: usize,
    connected: Vec<String>,
}

/// The model's live calls in execution order, fused ones included: the graph as the user wrote it.
fn calls(plan: &Plan) -> impl Iterator<Item = (CallId, &Call)> {
    plan.schedule.iter().filter_map(|&c| plan.typed.model.calls.get(c.0).map(|call| (c, call)))
}

/// The Keras shape of value `v`.
fn shape(plan: &Plan, v: ValueId) -> String {
    plan.typed.shapes.get(v.0).cloned().flatten().map(|s| s.keras()).unwrap_or_default()
}

/// Layers in order of their first scheduled call.
fn layer_order(plan: &Plan) -> Vec<LayerId> {
    let mut order: Vec<LayerId> = Vec::new();
    for (_, call) in calls(plan) {
        if !order.contains(&call.layer) {
            order.push(call.layer);
        }
    }
    order
}

/// `producer[node][0]` like Keras' "Connected to" column.
fn inbound(plan: &Plan, v: ValueId) -> String {
    let m = &plan.typed.model;
    match m.values.get(v.0).map(|x| x.producer) {
        Some(Producer::Input(i)) => m.inputs.get(i).map(|x| format!("{}[0][0]", x.name)).unwrap_or_default(),
        Some(Producer::Call(c)) => {
            let Some(call) = m.calls.get(c.0) else { return String::new() };
            let node = calls(plan).filter(|(_, x)| x.layer == call.layer).position(|(x, _)| x == c).unwrap_or(0);
            let name = m.layers.get(call.layer.0).map(|l| l.name.as_str()).unwrap_or("?");
            format!("{name}[{node}][0]")
        }
        _ => String::new(),
    }
}

fn layer_params(plan: &Plan, l: LayerId) -> (usize, usize) {
    let range = plan.layer_params.get(l.0).cloned().unwrap_or(0..0);
    let mut total = 0;
    let mut trainable = 0;
    for p in plan.params.get(range).unwrap_or(&[]) {
        total += p.len;
        if p.trainable {
            trainable += p.len;
        }
    }
    (total, trainable)
}

/// The shape of a call's result as Keras' summary prints it: `(None, 8)`, or a list of them for a layer
/// that returns several tensors, `[(None, 5, 8), (None, 8), (None, 8)]`.
fn results_shape(plan: &Plan, call: &crate::hir::Call) -> String {
    if call.extra.is_empty() {
        return shape(plan, call.output);
    }
    let all: Vec<String> = call.results().map(|v| shape(plan, v)).collect();
    format!("[{}]", all.join(", "))
}

fn rows(plan: &Plan) -> Vec<Row> {
    let m = &plan.typed.model;
    let mut rows = Vec::new();
    for i in &plan.inputs {
        rows.push(Row { name: format!("{} (InputLayer)", i.name), shape: i.shape.keras(), params: 0, connected: vec!["-".into()] });
    }
    for l in layer_order(plan) {
        let Some(layer) = m.layers.get(l.0) else { continue };
        let mut shapes: Vec<String> = Vec::new();
        let mut connected = Vec::new();
        for (_, call) in calls(plan).filter(|(_, call)| call.layer == l) {
            let sh = results_shape(plan, call);
            if !shapes.contains(&sh) {
                shapes.push(sh);
            }
            connected.extend(call.inputs.iter().map(|v| inbound(plan, *v)));
        }
        let frozen = if layer.trainable { "" } else { ", frozen" };
        rows.push(Row {
            name: format!("{} ({}{frozen})", layer.name, layer.keras_type),
            shape: shapes.join(", "),
            params: layer_params(plan, l).0,
            connected,
        });
    }
    rows
}

/// Bytes in Keras' style: `1.32 KB`, `0.00 B`.
pub fn human_bytes(bytes: usize) -> String {
    let b = bytes as f64;
    if b < 1024.0 {
        format!("{b:.2} B")
    } else if b < 1024.0 * 1024.0 {
        format!("{:.2} KB", b / 1024.0)
    } else if b < 1024.0 * 1024.0 * 1024.0 {
        format!("{:.2} MB", b / (1024.0 * 1024.0))
    } else {
        format!("{:.2} GB", b / (1024.0 * 1024.0 * 1024.0))
    }
}

/// The Keras 3 style summary table of `plan`.
pub fn summary(plan: &Plan) -> String {
    let rows = rows(plan);
    let head = ["Layer (type)", "Output Shape", "Param #", "Connected to"];
    let mut w = head.map(|h| h.chars().count());
    for r in &rows {
        w[0] = w[0].max(r.name.chars().count());
        w[1] = w[1].max(r.shape.chars().count());
        w[2] = w[2].max(group(r.params).chars().count());
        for c in &r.connected {
            w[3] = w[3].max(c.chars().count());
        }
    }
    let line = |l: char, m: char, r: char, fill: char| -> String {
        let parts: Vec<String> = w.iter().map(|n| fill.to_string().repeat(n + 2)).collect();
        format!("{l}{}{r}\n", parts.join(&m.to_string()))
    };
    let cells = |c: [&str; 4], sep: char| -> String {
        format!(
            "{sep} {:<a$} {sep} {:<b$} {sep} {:>c$} {sep} {:<d$} {sep}\n",
            c[0],
            c[1],
            c[2],
            c[3],
            a = w[0],
            b = w[1],
            c = w[2],
            d = w[3]
        )
    };
    let mut s = String::new();
    let _ = writeln!(s, "Model: \"{}\"", plan.typed.model.name);
    s.push_str(&line('┏', '┳', '┓', '━'));
    s.push_str(&cells(head, '┃'));
    s.push_str(&line('┡', '╇', '┩', '━'));
    for (i, r) in rows.iter().enumerate() {
        let p = group(r.params);
        for (j, c) in r.connected.iter().enumerate() {
            if j == 0 {
                s.push_str(&cells([&r.name, &r.shape, &p, c], '│'));
            } else {
                s.push_str(&cells(["", "", "", c], '│'));
            }
        }
        if i + 1 < rows.len() {
            s.push_str(&line('├', '┼', '┤', '─'));
        }
    }
    s.push_str(&line('└', '┴', '┘', '─'));
    let total = plan.param_count;
    let trainable: usize = plan.params.iter().filter(|p| p.trainable).map(|p| p.len).sum();
    let _ = writeln!(s, " Total params: {} ({})", group(total), human_bytes(total * 4));
    let _ = writeln!(s, " Trainable params: {} ({})", group(trainable), human_bytes(trainable * 4));
    let _ = writeln!(s, " Non-trainable params: {} ({})", group(total - trainable), human_bytes((total - trainable) * 4));
    let train: usize = plan.buffers.iter().sum::<usize>() + plan.scratch.iter().sum::<usize>();
    let grads: usize = plan.buffers.iter().sum();
    let infer = plan.inference.total();
    let _ = writeln!(
        s,
        " Activation memory per sample: training {} (+ {} of gradients), inference {} (buffers reused by liveness)",
        human_bytes(train * 4),
        human_bytes(grads * 4),
        human_bytes(infer * 4)
    );
    s
}

/// Thousands separators: 1234567 -> `1,234,567`.
fn group(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('{', "\\{")
        .replace('}', "\\}")
        .replace('|', "\\|")
        .replace('<', "\\<")
        .replace('>', "\\>")
}

/// The graph in Graphviz DOT: one node per input, layer and output, edges labelled with shapes
/// (Keras' `plot_model(show_shapes=True)`).
pub fn dot(plan: &Plan) -> String {
    let m = &plan.typed.model;
    let mut s = String::new();
    let _ = writeln!(s, "digraph \"{}\" {{", escape(&m.name.to_string()));
    s.push_str("  rankdir=TB;\n  node [shape=record, style=\"rounded,filled\", fillcolor=\"#f4f6fb\", fontname=\"Helvetica\", fontsize=11];\n  edge [fontname=\"Helvetica\", fontsize=10];\n");
    for (i, input) in plan.inputs.iter().enumerate() {
        let _ = writeln!(
            s,
            "  in{i} [label=\"{{{}|InputLayer|{}}}\", fillcolor=\"#e3f0e3\"];",
            escape(&input.name.to_string()),
            escape(&input.shape.keras())
        );
    }
    for l in layer_order(plan) {
        let Some(layer) = m.layers.get(l.0) else { continue };
        let shape = calls(plan).find(|(_, call)| call.layer == l).map(|(_, call)| results_shape(plan, call)).unwrap_or_default();
        let (n, _) = layer_params(plan, l);
        let _ = writeln!(
            s,
            "  l{} [label=\"{{{}|{}|{}|params: {}}}\"];",
            l.0,
            escape(&layer.name),
            escape(layer.keras_type),
            escape(&shape),
            group(n)
        );
    }
    for (o, out) in plan.outputs.iter().enumerate() {
        let _ = writeln!(
            s,
            "  out{o} [label=\"{{{}|output|{}}}\", fillcolor=\"#fbeee0\"];",
            escape(&out.name.to_string()),
            escape(&out.shape.keras())
        );
    }
    let node_of = |v: ValueId| -> Option<String> {
        match m.values.get(v.0)?.producer {
            Producer::Input(i) => Some(format!("in{i}")),
            Producer::Call(c) => m.calls.get(c.0).map(|call| format!("l{}", call.layer.0)),
            Producer::Poisoned => None,
        }
    };
    for (_, call) in calls(plan) {
        for v in &call.inputs {
            if let Some(from) = node_of(*v) {
                let _ = writeln!(s, "  {from} -> l{} [label=\"{}\"];", call.layer.0, escape(&shape(plan, *v)));
            }
        }
    }
    for (o, out) in m.outputs.iter().enumerate() {
        if let (Some(from), Some(p)) = (node_of(out.value), plan.outputs.get(o)) {
            let _ = writeln!(s, "  {from} -> out{o} [label=\"{}\"];", escape(&p.shape.keras()));
        }
    }
    s.push_str("}\n");
    s
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
mod tests {
    use crate::memory::tests::plan_of;

    #[test]
    fn summary_reports_training_and_inference_activation_memory() {
        // Buffers 8 + 64 + 32 + 64 + 4 = 172 floats (688 B) in training, as much again of gradients;
        // inference chains them through two buffers of 64 and 32 floats (384 B).
        let p = plan_of("struct M { input x: [8]; let a = Dense(64, activation = relu)(x); let b = Dense(32)(a); let c = Dense(64)(b); output y = Dense(4)(c); }");
        let s = super::summary(&p);
        let line =
            " Activation memory per sample: training 688.00 B (+ 688.00 B of gradients), inference 384.00 B (buffers reused by liveness)\n";
        assert!(s.ends_with(line), "{s}");
    }
}
