//! One PNG per explanation, read top-down: the waveform, the log-mel
//! spectrogram, each stream's Score-CAM saliency and attentive-pooling α over
//! time, the time-segment SHAP, then bar charts of the stream SHAP, the
//! feature-group SHAP and the class probabilities.

use plotters::coord::Shift;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

use super::{Attribution, Explanation};
use crate::features::LogMel;
use crate::plot::{self, FONT_NAME};

const WIDTH: u32 = 1400;
const SPECTRAL_COLOUR: RGBColor = RGBColor(214, 39, 40);
const TEMPORAL_COLOUR: RGBColor = RGBColor(31, 119, 180);
const POSITIVE: RGBColor = RGBColor(44, 160, 44);
const NEGATIVE: RGBColor = RGBColor(214, 39, 40);

type Area<'a> = DrawingArea<BitMapBackend<'a>, Shift>;

/// The explanation of a clip with its samples and log-mel spectrogram, as PNG bytes.
pub fn render(explanation: &Explanation, samples: &[f32], log_mel: &LogMel) -> Result<Vec<u8>, String> {
    plot::png_bytes((WIDTH, 1240), |root| {
        let err = |e: &dyn std::fmt::Display| e.to_string();
        let (title, rest) = root.split_vertically(50);
        let explained = if explanation.explained == explanation.predicted {
            String::new()
        } else {
            format!(" · explaining: {}", explanation.explained)
        };
        title
            .draw_text(
                &format!(
                    "{} — predicted: {} ({:.0} %){explained}",
                    std::path::Path::new(&explanation.file)
                        .file_name()
                        .map_or(explanation.file.clone(), |n| n.to_string_lossy().into_owned()),
                    explanation.predicted,
                    100.0 * explanation.probabilities.iter().copied().fold(0.0, f32::max)
                ),
                &(FONT_NAME, 24).into_font().color(&BLACK),
                (20, 14),
            )
            .map_err(|e| err(&e))?;
        let (wave, rest) = rest.split_vertically(170);
        let (mel, rest) = rest.split_vertically(250);
        let (saliency, rest) = rest.split_vertically(230);
        let (segments, bars) = rest.split_vertically(230);
        let duration = explanation.duration_s;
        waveform(&wave, samples, duration)?;
        spectrogram(&mel, log_mel, duration)?;
        saliency_lines(&saliency, explanation)?;
        segment_bars(&segments, explanation)?;
        let columns = bars.split_evenly((1, 3));
        bar_chart(
            &columns[0],
            "Stream SHAP (Δ probability)",
            &explanation.streams,
            Some(&|name: &str| {
                if name == "spectral" {
                    SPECTRAL_COLOUR
                } else {
                    TEMPORAL_COLOUR
                }
            }),
        )?;
        match &explanation.feature_groups {
            Some(groups) => bar_chart(&columns[1], "Feature-group SHAP (spectral)", groups, None)?,
            None => {
                columns[1]
                    .draw_text(
                        "no spectral stream: no feature groups",
                        &(FONT_NAME, 16).into_font().color(&BLACK),
                        (30, 100),
                    )
                    .map_err(|e| err(&e))?;
            }
        }
        probabilities(&columns[2], explanation)?;
        Ok(())
    })
}

fn waveform(area: &Area, samples: &[f32], duration: f64) -> Result<(), String> {
    let err = |e: &dyn std::fmt::Display| e.to_string();
    let peak = samples.iter().fold(0.0f32, |m, s| m.max(s.abs())).max(1e-6) as f64;
    let mut chart = time_chart(area, "Waveform", duration, -peak..peak)?;
    let axis = TimeAxis {
        y_desc: "",
        y_labels: 3,
        y_format: &|v| format!("{v:.2}"),
        y_grid: false,
    };
    axis.draw(&mut chart)?;
    // Min/max envelope per pixel column: every peak stays visible at any length.
    let columns = 1200usize;
    let per_column = samples.len().div_ceil(columns).max(1);
    let envelope = samples.chunks(per_column).enumerate().map(|(i, chunk)| {
        let x = (i * per_column) as f64 / samples.len() as f64 * duration;
        let (low, high) = chunk
            .iter()
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(l, h), &s| (l.min(s), h.max(s)));
        PathElement::new(vec![(x, f64::from(low)), (x, f64::from(high))], RGBColor(90, 90, 90))
    });
    chart.draw_series(envelope).map_err(|e| err(&e))?;
    Ok(())
}

fn spectrogram(area: &Area, log_mel: &LogMel, duration: f64) -> Result<(), String> {
    let err = |e: &dyn std::fmt::Display| e.to_string();
    let (n_mels, n_frames) = (log_mel.n_mels, log_mel.n_frames);
    let mut chart = time_chart(area, "Log-mel spectrogram (dB)", duration, 0.0..n_mels as f64)?;
    let axis = TimeAxis {
        y_desc: "mel band",
        y_labels: 10,
        y_format: &|v| format!("{v:.0}"),
        y_grid: false,
    };
    axis.draw(&mut chart)?;
    let max = log_mel.data.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let floor = max - 80.0;
    let frame_s = duration / n_frames.max(1) as f64;
    let cells = (0..n_mels).flat_map(|m| {
        (0..n_frames).map(move |t| {
            let value = ((log_mel.data[m * n_frames + t] - floor) / 80.0).clamp(0.0, 1.0);
            let (x0, x1) = (t as f64 * frame_s, (t + 1) as f64 * frame_s);
            Rectangle::new(
                [(x0, m as f64), (x1, (m + 1) as f64)],
                ViridisRGB::get_color(f64::from(value)).filled(),
            )
        })
    });
    chart.draw_series(cells).map_err(|e| err(&e))?;
    Ok(())
}

fn saliency_lines(area: &Area, explanation: &Explanation) -> Result<(), String> {
    let err = |e: &dyn std::fmt::Display| e.to_string();
    let caption = "Where each stream listened: Score-CAM saliency and pooling weight α";
    let mut chart = time_chart(area, caption, explanation.duration_s, 0.0..1.05)?;
    let axis = TimeAxis {
        y_desc: "0 … 1",
        y_labels: 3,
        y_format: &|v| format!("{v:.1}"),
        y_grid: false,
    };
    axis.draw(&mut chart)?;
    let streams = [
        ("spectral", &explanation.spectral, SPECTRAL_COLOUR),
        ("temporal", &explanation.temporal, TEMPORAL_COLOUR),
    ];
    for (name, stream, colour) in streams {
        let Some(stream) = stream else { continue };
        let points: Vec<(f64, f64)> = stream
            .saliency_times_s
            .iter()
            .zip(&stream.saliency)
            .map(|(&t, &s)| (t, f64::from(s)))
            .collect();
        chart
            .draw_series(LineSeries::new(points, colour.stroke_width(3)))
            .map_err(|e| err(&e))?
            .label(format!("{name} saliency"))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(3)));
        // α is scaled to its maximum so both streams share the axis.
        let max_alpha = stream.alpha.iter().copied().fold(0.0f32, f32::max).max(1e-12);
        let alpha: Vec<(f64, f64)> = stream
            .alpha_times_s
            .iter()
            .zip(&stream.alpha)
            .map(|(&t, &a)| (t, f64::from(a / max_alpha)))
            .collect();
        let light = colour.mix(0.55);
        chart
            .draw_series(DashedLineSeries::new(alpha, 6, 4, light.stroke_width(2)))
            .map_err(|e| err(&e))?
            .label(format!("{name} α (÷ max)"))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], light.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font((FONT_NAME, 13))
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(|e| err(&e))?;
    Ok(())
}

fn segment_bars(area: &Area, explanation: &Explanation) -> Result<(), String> {
    let err = |e: &dyn std::fmt::Display| e.to_string();
    let segments = &explanation.time_segments;
    let values = &segments.attribution.shapley.values;
    let extent = values.iter().fold(1e-6f64, |m, v| m.max(v.abs())) * 1.15;
    let caption = "Time-segment SHAP: how much each stretch of the clip adds to the explained class";
    let mut chart = time_chart(area, caption, explanation.duration_s, -extent..extent)?;
    let axis = TimeAxis {
        y_desc: "Δ probability",
        y_labels: 5,
        y_format: &|v| format!("{v:+.2}"),
        y_grid: true,
    };
    axis.draw(&mut chart)?;
    let bars = values.iter().enumerate().map(|(i, &v)| {
        let (start, end) = (segments.bounds_s[i], segments.bounds_s[i + 1]);
        let gap = (end - start) * 0.08;
        let colour = if v >= 0.0 { POSITIVE } else { NEGATIVE };
        Rectangle::new([(start + gap, 0.0), (end - gap, v)], colour.filled())
    });
    chart.draw_series(bars).map_err(|e| err(&e))?;
    Ok(())
}

fn bar_chart(
    area: &Area,
    title: &str,
    attribution: &Attribution,
    colour_of: Option<&dyn Fn(&str) -> RGBColor>,
) -> Result<(), String> {
    let values = &attribution.shapley.values;
    let names = &attribution.players;
    let extent = values.iter().fold(1e-6f64, |m, v| m.max(v.abs())) * 1.2;
    bars(
        area,
        title,
        names,
        values,
        -extent..extent,
        &|v| format!("{v:+.2}"),
        &|i, v| match colour_of {
            Some(colour_of) => colour_of(&names[i]),
            None if v >= 0.0 => POSITIVE,
            None => NEGATIVE,
        },
    )
}

fn probabilities(area: &Area, explanation: &Explanation) -> Result<(), String> {
    let values: Vec<f64> = explanation.probabilities.iter().map(|&p| f64::from(p)).collect();
    let labels = &explanation.labels;
    bars(
        area,
        "Class probabilities",
        labels,
        &values,
        0.0..1.0,
        &|v| format!("{:.0} %", 100.0 * v),
        &|i, _| {
            if labels[i] == explanation.predicted {
                TEMPORAL_COLOUR
            } else {
                RGBColor(160, 160, 160)
            }
        },
    )
}

/// The charts with time on the x axis share their frame and axes: a
/// caption, `0..duration` seconds across, `y` up.
type TimeChart<'a, 'b> = ChartContext<'a, BitMapBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

fn time_chart<'a, 'b>(
    area: &'a Area<'b>,
    caption: &str,
    duration: f64,
    y: std::ops::Range<f64>,
) -> Result<TimeChart<'a, 'b>, String> {
    ChartBuilder::on(area)
        .caption(caption, (FONT_NAME, 17))
        .margin_left(15)
        .margin_right(25)
        .x_label_area_size(30)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..duration, y)
        .map_err(|e| e.to_string())
}

/// The axes of a [`time_chart`]: time across, and the y axis as given.
struct TimeAxis<'a> {
    y_desc: &'a str,
    y_labels: usize,
    y_format: &'a dyn Fn(&f64) -> String,
    /// Horizontal grid lines (no vertical ones); none at all otherwise.
    y_grid: bool,
}

impl TimeAxis<'_> {
    fn draw(&self, chart: &mut TimeChart) -> Result<(), String> {
        let mut mesh = chart.configure_mesh();
        if self.y_grid {
            mesh.disable_x_mesh();
        } else {
            mesh.disable_mesh();
        }
        mesh.x_desc("time (s)")
            .y_desc(self.y_desc)
            .y_labels(self.y_labels)
            .y_label_formatter(self.y_format)
            .label_style((FONT_NAME, 13))
            .axis_desc_style((FONT_NAME, 14))
            .draw()
            .map_err(|e| e.to_string())
    }
}

/// One bar per name, coloured by `colour(index, value)`, with the values'
/// axis `y` labelled by `y_format`.
fn bars(
    area: &Area,
    title: &str,
    names: &[String],
    values: &[f64],
    y: std::ops::Range<f64>,
    y_format: &dyn Fn(&f64) -> String,
    colour: &dyn Fn(usize, f64) -> RGBColor,
) -> Result<(), String> {
    let err = |e: &dyn std::fmt::Display| e.to_string();
    let n = values.len();
    let mut chart = ChartBuilder::on(area)
        .caption(title, (FONT_NAME, 17))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..n as f64, y)
        .map_err(|e| err(&e))?;
    let label = |v: &f64| category_label(names, *v);
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(2 * n + 1)
        .x_label_formatter(&label)
        .y_labels(5)
        .y_label_formatter(y_format)
        .label_style((FONT_NAME, 12))
        .draw()
        .map_err(|e| err(&e))?;
    let bars = values
        .iter()
        .enumerate()
        .map(|(i, &v)| Rectangle::new([(i as f64 + 0.15, 0.0), (i as f64 + 0.85, v)], colour(i, v).filled()));
    chart.draw_series(bars).map_err(|e| err(&e))?;
    Ok(())
}

/// The name of the category whose bar is centred at `v`, else nothing.
fn category_label(names: &[String], v: f64) -> String {
    if (v - v.floor() - 0.5).abs() < 1e-6 {
        names.get(v.floor() as usize).cloned().unwrap_or_default()
    } else {
        String::new()
    }
}
