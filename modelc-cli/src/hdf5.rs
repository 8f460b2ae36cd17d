//! Keras' HDF5 weight layouts, read with the pure-Rust `hdf5-pure`:
//! - `.keras` archives: `layers/<auto name>/vars/0, 1, ...`, the layer's Keras name in the `name`
//!   attribute of `vars`, a nested model's layers under its own `layers/` group;
//! - legacy `.h5`: `model_weights/<layer>/` with a `weight_names` attribute (a nested model's weights
//!   named `tower_dense1/kernel` inside group `tower`), the config in the root's `model_config` attribute.

use crate::{ImportError, LayerWeights};
use hdf5_pure::{AttrValue, File};

fn err(what: &str, e: impl std::fmt::Display) -> ImportError {
    ImportError::Format(format!("HDF5: {what}: {e}"))
}

/// A string attribute's value.
fn string(v: &AttrValue) -> Option<String> {
    match v {
        AttrValue::String(s) | AttrValue::AsciiString(s) | AttrValue::VarLenString(s) | AttrValue::VarLenAsciiString(s) => Some(s.clone()),
        _ => None,
    }
}

/// A string-array attribute's values (an empty numeric array is h5py's empty list).
fn strings(v: &AttrValue) -> Vec<String> {
    match v {
        AttrValue::StringArray(s) | AttrValue::VarLenStringArray(s) | AttrValue::VarLenAsciiStringArray(s) => s.clone(),
        other => string(other).into_iter().collect(),
    }
}

fn read(f: &File, path: &str) -> Result<(Vec<usize>, Vec<f32>), ImportError> {
    let ds = f.dataset(path).map_err(|e| err(path, e))?;
    let shape = ds.shape().map_err(|e| err(path, e))?.into_iter().map(|d| d as usize).collect();
    let values = ds.read_f32().map_err(|e| err(path, e))?;
    Ok((shape, values))
}

/// The weights of a `.keras` archive's `model.weights.h5`, by leaf layer.
pub fn keras_weights(bytes: Vec<u8>) -> Result<LayerWeights, ImportError> {
    let f = File::from_bytes(bytes).map_err(|e| err("model.weights.h5", e))?;
    let mut out = LayerWeights::new();
    walk(&f, "layers", "", &mut out)?;
    Ok(out)
}

fn walk(f: &File, layers: &str, prefix: &str, out: &mut LayerWeights) -> Result<(), ImportError> {
    let Ok(g) = f.group(layers) else { return Ok(()) };
    for sub in g.groups().map_err(|e| err(layers, e))? {
        layer(f, &format!("{layers}/{sub}"), &sub, prefix, out)?;
    }
    Ok(())
}

/// One layer's weights (group `path`, Keras' auto name `sub`), and those of its nested model's layers
/// and of its own sublayers (`time_distributed/layer` -> `td/dense`, `multi_head_attention/query_dense`
/// -> `mha/query`).
fn layer(f: &File, path: &str, sub: &str, prefix: &str, out: &mut LayerWeights) -> Result<(), ImportError> {
    let vars = format!("{path}/vars");
    let attrs = f.group(&vars).and_then(|v| v.attrs()).map_err(|e| err(&vars, e))?;
    let name = attrs.get("name").and_then(string).unwrap_or(sub.to_string());
    let full = format!("{prefix}{name}");
    if f.group(&format!("{path}/layers")).is_ok() {
        walk(f, &format!("{path}/layers"), &format!("{full}/"), out)?;
    }
    // A recurrent layer's weights are its cell's (`lstm/cell/vars`, named `lstm_cell`); a Bidirectional
    // layer's are its two layers' cells, keyed as modelc names them after the cell
    // (`bi/forward_lstm/lstm_cell`, whatever Keras named the wrapped layer).
    cell(f, path, &full, out)?;
    for side in ["forward", "backward"] {
        let wrapped = format!("{path}/{side}_layer");
        if let Some(name) = cell(f, &wrapped, "", &mut LayerWeights::new())? {
            let kind = name.strip_suffix("_cell").unwrap_or(&name);
            cell(f, &wrapped, &format!("{full}/{side}_{kind}"), out)?;
        }
    }
    const HANDLED: [&str; 5] = ["vars", "layers", "cell", "forward_layer", "backward_layer"];
    for inner in f.group(path).and_then(|g| g.groups()).map_err(|e| err(path, e))? {
        if !HANDLED.contains(&inner.as_str()) && f.group(&format!("{path}/{inner}/vars")).is_ok() {
            layer(f, &format!("{path}/{inner}"), &inner, &format!("{full}/"), out)?;
        }
    }
    let mut idx: Vec<usize> =
        f.group(&vars).and_then(|v| v.datasets()).map_err(|e| err(&vars, e))?.iter().filter_map(|d| d.parse().ok()).collect();
    idx.sort_unstable();
    let mut ws = Vec::new();
    for i in idx {
        ws.push(read(f, &format!("{vars}/{i}"))?);
    }
    if !ws.is_empty() {
        out.insert(full, ws);
    }
    Ok(())
}

/// The weights of the recurrent cell of the layer at group `layer` (`<layer>/cell/vars`), under
/// `<full>/<cell name>`: the cell's name, or `None` when the layer has no cell.
fn cell(f: &File, layer: &str, full: &str, out: &mut LayerWeights) -> Result<Option<String>, ImportError> {
    let vars = format!("{layer}/cell/vars");
    let Ok(g) = f.group(&vars) else { return Ok(None) };
    let attrs = g.attrs().map_err(|e| err(&vars, e))?;
    let Some(name) = attrs.get("name").and_then(string) else { return Ok(None) };
    let mut idx: Vec<usize> = g.datasets().map_err(|e| err(&vars, e))?.iter().filter_map(|d| d.parse().ok()).collect();
    idx.sort_unstable();
    let mut ws = Vec::new();
    for i in idx {
        ws.push(read(f, &format!("{vars}/{i}"))?);
    }
    if !ws.is_empty() {
        out.insert(format!("{full}/{name}"), ws);
    }
    Ok(Some(name))
}

/// A Bidirectional layer's weight name as modelc names it: Keras names the wrapped copies after the
/// wrapped layer (`bi/forward_lstm_1/lstm_cell/kernel`), modelc after the cell (`bi/forward_lstm/...`).
fn wrapped_rnn_name(name: &str) -> String {
    let mut parts: Vec<String> = name.split('/').map(str::to_string).collect();
    for i in 0..parts.len().saturating_sub(1) {
        let cell = parts.get(i + 1).and_then(|c| c.strip_suffix("_cell")).map(str::to_string);
        if let (Some(part), Some(kind)) = (parts.get_mut(i), cell) {
            for side in ["forward_", "backward_"] {
                if part.starts_with(side) {
                    *part = format!("{side}{kind}");
                }
            }
        }
    }
    parts.join("/")
}

/// A legacy `.h5` file's config, Keras version and weights.
pub fn legacy(bytes: Vec<u8>) -> Result<(String, String, LayerWeights), ImportError> {
    let f = File::from_bytes(bytes).map_err(|e| err("file", e))?;
    let root = f.root().attrs().map_err(|e| err("/", e))?;
    let Some(config) = root.get("model_config").and_then(string) else {
        return Err(ImportError::Format(String::from(
            "this HDF5 file holds no model config (a weights-only file?): save the whole model with model.save(\"model.h5\") or as .keras",
        )));
    };
    let version = root.get("keras_version").and_then(string).unwrap_or_else(|| String::from("unknown"));
    let mw = f.group("model_weights").map_err(|e| err("model_weights", e))?;
    let names = mw.attrs().map_err(|e| err("model_weights", e))?.get("layer_names").map(strings).unwrap_or_default();
    let mut out = LayerWeights::new();
    for top in names {
        let gpath = format!("model_weights/{top}");
        let attrs = f.group(&gpath).and_then(|g| g.attrs()).map_err(|e| err(&gpath, e))?;
        for wn in attrs.get("weight_names").map(strings).unwrap_or_default() {
            let full = wrapped_rnn_name(&legacy_name(&top, &wn));
            let layer = full.rsplit_once('/').map(|(l, _)| l.to_string()).unwrap_or_default();
            let w = read(&f, &format!("{gpath}/{wn}"))?;
            out.entry(layer).or_default().push(w);
        }
    }
    Ok((config, version, out))
}

/// The modelc name of weight `wn` stored under top-level layer `top`: Keras writes `dense/kernel` for a
/// layer, `tower_dense1/kernel` for a nested functional model's (`tower/tower_dense1/kernel`),
/// `head/head_dense1/kernel` for a nested Sequential model's, `mlp/hidden/kernel` in a Sequential model.
fn legacy_name(top: &str, wn: &str) -> String {
    let parts: Vec<&str> = wn.split('/').collect();
    match parts.iter().position(|p| *p == top) {
        Some(i) => parts.get(i..).map(|p| p.join("/")).unwrap_or_default(),
        None => format!("{top}/{wn}"),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(format!("{}/../tests/fixtures/keras_import/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
    }

    #[test]
    fn legacy_weight_names_become_modelc_names() {
        assert_eq!(legacy_name("dense", "dense/kernel"), "dense/kernel");
        assert_eq!(legacy_name("hidden", "mlp/hidden/kernel"), "hidden/kernel");
        assert_eq!(legacy_name("tower", "tower_dense1/kernel"), "tower/tower_dense1/kernel");
        assert_eq!(legacy_name("head", "head/head_dense1/bias"), "head/head_dense1/bias");
        assert_eq!(wrapped_rnn_name("bi/forward_lstm_1/lstm_cell/kernel"), "bi/forward_lstm/lstm_cell/kernel");
        assert_eq!(wrapped_rnn_name("bi/backward_enc/gru_cell/bias"), "bi/backward_gru/gru_cell/bias");
        assert_eq!(wrapped_rnn_name("forward_dense/kernel"), "forward_dense/kernel");
    }

    #[test]
    fn chunked_gzip_datasets_read_as_the_contiguous_ones() {
        // The same weights, written by Keras (contiguous) and rewritten by h5py (chunked, shuffled, gzip).
        let chunked = keras_weights(fixture("chunked_gzip.weights.h5")).unwrap();
        let (_, _, plain) = crate::read_keras(&fixture("mlp.keras")).unwrap();
        // chunked_gzip has no `name` attributes: it is keyed by Keras' group names.
        let c: Vec<_> = chunked.values().collect();
        let p: Vec<_> = plain.values().collect();
        assert_eq!(c.len(), 2);
        assert_eq!(c, p);
    }
}
