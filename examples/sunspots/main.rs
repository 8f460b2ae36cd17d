//! One-step-ahead forecasting on real sequence data shipped with the project: the yearly mean sunspot
//! number, 1700–2008 (`data/series/sunspots.csv`). From the last 24 years, an LSTM(32) → Dense(1)
//! forecasts the next year. The series is scaled to [0, 1] by the minimum and maximum of the training
//! years only; the windows are split chronologically by the year they forecast (train before 1920,
//! validation 1920–1959, test 1960–2008), and only the training windows are shuffled. Adam, mean squared
//! error, early stopping on the validation loss.
//!
//! It prints the test RMSE and MAE in sunspot numbers of the model and of three baselines: naive (next
//! year as this year), seasonal (as 11 years before, one solar cycle) and the training mean; and writes
//! to `out/sunspots/`: the test period (actual, forecast, naive) and the training curves as SVG, and the
//! history as CSV.
//!
//! Run: `cargo run --release --example sunspots`

use std::fmt::Write as _;
use std::path::Path;
use std::time::Instant;

use modelc::datasets::load_series;
use modelc::ndarray::{Array2, Axis};
use modelc::prelude::*;

mod model;
use model::*;

const SEED: u64 = 42;
const OUT: &str = "out/sunspots";
/// First year forecast by a validation window.
const VAL_FROM: f64 = 1920.0;
/// First year forecast by a test window.
const TEST_FROM: f64 = 1960.0;
/// Length of the solar cycle in years, for the seasonal baseline.
const CYCLE: usize = 11;

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let series = load_series(concat!(env!("CARGO_MANIFEST_DIR"), "/data/series/sunspots.csv"))?;
    let Split { train, val, test, scale } = split(&series, VAL_FROM, TEST_FROM)?;
    let span = |w: &Windows| format!("{}–{}", w.years[0], w.years[w.len() - 1]);
    println!(
        "sunspots: {} yearly values; windows of {STEPS} years forecasting {} (train, {} windows), {} (validation, {}), {} (test, {})",
        series.values.len(),
        span(&train),
        train.len(),
        span(&val),
        val.len(),
        span(&test),
        test.len()
    );
    println!("scaled by the training years' range [{}, {}]", scale.min, scale.max);

    let mut model = SunspotNet::new(SEED);
    print!("{}", SunspotNet::SUMMARY);
    let settings = Fit {
        epochs: 300,
        batch_size: 16,
        seed: SEED,
        verbose: false,
        early_stopping: Some(EarlyStopping { patience: 20, restore_best_weights: true, ..EarlyStopping::default() }),
        ..Fit::default()
    };
    let started = Instant::now();
    let mut trainer = model.compile(Adam::new(3e-3), SunspotNetLosses { next: Loss::MeanSquaredError }, &[]);
    let history = trainer.fit_with_validation_data(&train.inputs(), &train.targets(), (&val.inputs(), &val.targets()), &settings)?;
    let secs = started.elapsed().as_secs_f64();
    let val_loss = history.get("val_loss").unwrap_or(&[]);
    let (best_epoch, best) =
        val_loss.iter().copied().enumerate().fold((0, f64::INFINITY), |b, (i, v)| if v < b.1 { (i + 1, v) } else { b });
    println!("trained {} epochs in {secs:.1} s; best val_loss {best:.5} (epoch {best_epoch}, weights restored)", history.epochs());

    let forecast = model.predict(&test.inputs())?.next;
    let naive = test.naive();
    let seasonal = test.inputs.index_axis(Axis(1), STEPS - CYCLE).to_owned();
    let mean = train.targets.mean().unwrap_or(0.0);
    let flat = Array2::from_elem(test.targets.dim(), mean);
    println!("test {} ({} years), errors in sunspot numbers:", span(&test), test.len());
    let rows = [
        ("LSTM(32) forecast", &forecast),
        ("naive (last value)", &naive),
        ("seasonal (11 years before)", &seasonal),
        ("training mean", &flat),
    ];
    let scores: Vec<(f64, f64)> = rows.iter().map(|(_, f)| rmse_mae(f.view(), test.targets.view(), scale)).collect();
    for ((name, _), (rmse, mae)) in rows.iter().zip(&scores) {
        println!("  {name:<28} RMSE {rmse:6.2}  MAE {mae:6.2}");
    }
    let ((model_rmse, model_mae), (naive_rmse, naive_mae)) = (scores[0], scores[1]);
    println!(
        "the model's test RMSE is {:.0}% and its MAE {:.0}% of the naive baseline's",
        100.0 * model_rmse / naive_rmse,
        100.0 * model_mae / naive_mae
    );

    std::fs::create_dir_all(OUT)?;
    let out = Path::new(OUT);
    let to_units = |a: &Array2<f32>| a.iter().map(|&s| scale.invert(s)).collect::<Vec<f32>>();
    let lines = [
        ("actual", "black", to_units(&test.targets)),
        ("LSTM forecast", "#d62728", to_units(&forecast)),
        ("naive", "#1f77b4", to_units(&naive)),
    ];
    std::fs::write(out.join("sunspots_test.svg"), lines_svg(&test.years, &lines))?;
    modelc::viz::write_history_svg(&history, out.join("sunspots_history.svg"))?;
    history.write_csv(out.join("sunspots_history.csv"))?;
    println!("wrote {OUT}/sunspots_test.svg, sunspots_history.svg, sunspots_history.csv");
    Ok(())
}

/// An SVG line chart: `years` on the x axis, one polyline per `(label, colour, values)`, a legend, and
/// the y axis from 0 to the largest value.
fn lines_svg(years: &[f64], lines: &[(&str, &str, Vec<f32>)]) -> String {
    const W: f64 = 720.0;
    const H: f64 = 320.0;
    const LEFT: f64 = 50.0;
    const RIGHT: f64 = 130.0;
    const TOP: f64 = 20.0;
    const BOTTOM: f64 = 30.0;
    let (first, last) = (years.first().copied().unwrap_or(0.0), years.last().copied().unwrap_or(1.0));
    let top = lines.iter().flat_map(|(_, _, v)| v.iter().copied()).fold(1.0_f32, f32::max);
    let x = |year: f64| LEFT + (year - first) / (last - first).max(1.0) * (W - LEFT - RIGHT);
    let y = |v: f32| TOP + (1.0 - f64::from(v.max(0.0) / top)) * (H - TOP - BOTTOM);
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\" \
         font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"{W}\" height=\"{H}\" fill=\"white\"/>\n"
    );
    // Axes, with the first and last year and the y range as labels.
    let (x0, x1, y0, y1) = (x(first), x(last), y(0.0), y(top));
    let _ = writeln!(svg, "<path d=\"M{x0:.1},{y1:.1} V{y0:.1} H{x1:.1}\" stroke=\"#888\" fill=\"none\"/>");
    let _ = writeln!(svg, "<text x=\"{x0:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{first}</text>", y0 + 18.0);
    let _ = writeln!(svg, "<text x=\"{x1:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{last}</text>", y0 + 18.0);
    let _ = writeln!(svg, "<text x=\"{:.1}\" y=\"{y0:.1}\" text-anchor=\"end\">0</text>", x0 - 6.0);
    let _ = writeln!(svg, "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{top:.0}</text>", x0 - 6.0, y1 + 4.0);
    for (i, (label, colour, values)) in lines.iter().enumerate() {
        let points: Vec<String> = years.iter().zip(values).map(|(&yr, &v)| format!("{:.1},{:.1}", x(yr), y(v))).collect();
        let _ = writeln!(svg, "<polyline points=\"{}\" stroke=\"{colour}\" stroke-width=\"1.5\" fill=\"none\"/>", points.join(" "));
        let ly = TOP + 10.0 + 18.0 * i as f64;
        let _ = writeln!(svg, "<path d=\"M{:.1},{ly:.1} h20\" stroke=\"{colour}\" stroke-width=\"2\"/>", W - RIGHT + 10.0);
        let _ = writeln!(svg, "<text x=\"{:.1}\" y=\"{:.1}\">{label}</text>", W - RIGHT + 36.0, ly + 4.0);
    }
    svg.push_str("</svg>\n");
    svg
}
