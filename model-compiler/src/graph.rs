//! `build`: `hir::Model` -> `Graph`, a petgraph `StableGraph` of Input / Call / Output nodes whose edges carry
//! values from producer to consumer. It gives the schedule (a topological order) and reachability.

use crate::diag::{Diagnostic, Diagnostics};
use crate::hir::{self, CallId, Producer, ValueId};
use petgraph::algo::toposort;
use petgraph::stable_graph::{NodeIndex, StableDiGraph};
use petgraph::visit::{Dfs, Reversed};

/// A node of the model graph.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Node {
    /// Model input `i`.
    Input(usize),
    /// A layer call.
    Call(CallId),
    /// Model output `i`.
    Output(usize),
}

/// An edge: the value flowing and the operand position it fills at the consumer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Edge {
    /// The value.
    pub value: ValueId,
    /// Operand index at the consumer.
    pub operand: usize,
}

/// The dataflow graph of one model.
#[derive(Debug, Clone)]
pub struct Graph {
    /// The graph itself.
    pub g: StableDiGraph<Node, Edge>,
    /// Node of each model input.
    pub inputs: Vec<NodeIndex>,
    /// Node of each call.
    pub calls: Vec<NodeIndex>,
    /// Node of each model output.
    pub outputs: Vec<NodeIndex>,
}

/// Builds the graph of `m`. Poisoned values add no edge.
pub fn build(m: &hir::Model) -> Graph {
    let mut g = StableDiGraph::new();
    let inputs: Vec<NodeIndex> = (0..m.inputs.len()).map(|i| g.add_node(Node::Input(i))).collect();
    let calls: Vec<NodeIndex> = (0..m.calls.len()).map(|c| g.add_node(Node::Call(CallId(c)))).collect();
    let outputs: Vec<NodeIndex> = (0..m.outputs.len()).map(|o| g.add_node(Node::Output(o))).collect();
    let producer = |v: ValueId| -> Option<NodeIndex> {
        match m.values.get(v.0)?.producer {
            Producer::Input(i) => inputs.get(i).copied(),
            Producer::Call(c) => calls.get(c.0).copied(),
            Producer::Poisoned => None,
        }
    };
    for (c, call) in m.calls.iter().enumerate() {
        for (operand, v) in call.inputs.iter().enumerate() {
            if let (Some(from), Some(to)) = (producer(*v), calls.get(c)) {
                g.add_edge(from, *to, Edge { value: *v, operand });
            }
        }
    }
    for (o, out) in m.outputs.iter().enumerate() {
        if let (Some(from), Some(to)) = (producer(out.value), outputs.get(o)) {
            g.add_edge(from, *to, Edge { value: out.value, operand: 0 });
        }
    }
    Graph { g, inputs, calls, outputs }
}

impl Graph {
    /// The calls in evaluation order: source order, which `let` makes topological. The topological sort
    /// still runs, so a cycle (which the DSL cannot express today) is reported rather than assumed away.
    pub fn schedule(&self, diags: &mut Diagnostics, m: &hir::Model) -> Vec<CallId> {
        match toposort(&self.g, None) {
            Ok(_) => (0..m.calls.len()).map(CallId).collect(),
            Err(cycle) => {
                let span = match self.g.node_weight(cycle.node_id()) {
                    Some(Node::Call(c)) => m.calls.get(c.0).map(|c| c.span),
                    _ => None,
                }
                .unwrap_or_else(|| m.name.span());
                diags.push(
                    Diagnostic::new(span, "the model graph has a cycle through this layer").help("a layer cannot consume its own output"),
                );
                Vec::new()
            }
        }
    }

    /// Inputs from which no output can be reached.
    pub fn dead_inputs(&self) -> Vec<usize> {
        let reversed = Reversed(&self.g);
        let mut reached = vec![false; self.inputs.len()];
        for &o in &self.outputs {
            let mut dfs = Dfs::new(reversed, o);
            while let Some(n) = dfs.next(reversed) {
                if let Some(Node::Input(i)) = self.g.node_weight(n) {
                    if let Some(r) = reached.get_mut(*i) {
                        *r = true;
                    }
                }
            }
        }
        reached.iter().enumerate().filter(|(_, r)| !**r).map(|(i, _)| i).collect()
    }

    /// Calls from which no output can be reached (dead code).
    pub fn dead_calls(&self) -> Vec<CallId> {
        let reversed = Reversed(&self.g);
        let mut reached = vec![false; self.calls.len()];
        for &o in &self.outputs {
            let mut dfs = Dfs::new(reversed, o);
            while let Some(n) = dfs.next(reversed) {
                if let Some(Node::Call(c)) = self.g.node_weight(n) {
                    if let Some(r) = reached.get_mut(c.0) {
                        *r = true;
                    }
                }
            }
        }
        reached.iter().enumerate().filter(|(_, r)| !**r).map(|(i, _)| CallId(i)).collect()
    }
}
