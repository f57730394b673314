//! One PNG per explanation, read top-down: the waveform, the log-mel
//! spectrogram, each stream's Score-CAM saliency and attentive-pooling α over
//! time, the time-segment SHAP, then bar charts of the stream SHAP (models
//! with two streams), the feature-group SHAP (models with a spectral
//! stream) and the class probabilities. Every SHAP panel colours by sign the
//! same way (green raises the explained class's probability, red lowers it);
//! the streams have their own colours, used only for their lines.

use plotters::coord::Shift;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

use super::{Attribution, Explanation};
use crate::features::LogMel;
use crate::plot::{self, FONT_NAME};

const WIDTH: u32 = 1400;
const SPECTRAL_COLOUR: RGBColor = RGBColor(255, 127, 14);
const TEMPORAL_COLOUR: RGBColor = RGBColor(31, 119, 180);
const POSITIVE: RGBColor = RGBColor(44, 160, 44);
const NEGATIVE: RGBColor = RGBColor(214, 39, 40);
const PREDICTED: RGBColor = RGBColor(60, 70, 90);
/// Dynamic range of the spectrogram's colours, below its loudest cell.
const SPECTROGRAM_RANGE_DB: f32 = 80.0;

type Area<'a> = DrawingArea<BitMapBackend<'a>, Shift>;

/// The explanation of a clip with its samples and log-mel spectrogram, as PNG bytes.
pub fn render(explanation: &Explanation, samples: &[f32], log_mel: &LogMel) -> Result<Vec<u8>, String> {
    plot::png_bytes((WIDTH, 1240), |root| {
        let err = |e: &dyn std::fmt::Display| e.to_string();
        let (title, rest) = root.split_vertically(50);
        let explained_note = if explanation.explained == explanation.predicted {
            String::new()
        } else {
            format!(" · explaining: {}", explanation.explained)
        };
        title
            .draw_text(
                &format!(
                    "{} — predicted: {} ({:.0} %){explained_note}",
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
        // One panel per thing the model has: streams to compare, feature groups, and always the classes.
        let explained = &explanation.explained;
        let streams = (explanation.streams.players.len() > 1).then_some(&explanation.streams);
        let panels = usize::from(streams.is_some()) + usize::from(explanation.feature_groups.is_some()) + 1;
        let columns = bars.split_evenly((1, panels));
        let mut column = columns.iter();
        if let Some(streams) = streams {
            let title = format!("Stream SHAP: Δ P({explained}) vs training-mean stream");
            bar_chart(column.next().expect("a column per panel"), &title, streams)?;
        }
        if let Some(groups) = &explanation.feature_groups {
            let title = format!("Feature-group SHAP: Δ P({explained}) vs training mean");
            bar_chart(column.next().expect("a column per panel"), &title, groups)?;
        }
        probabilities(column.next().expect("a column per panel"), explanation)?;
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
    let (plot_area, scale_area) = area.split_horizontally(area.dim_in_pixel().0 - 110);
    let mut chart = time_chart(&plot_area, "Log-mel spectrogram", duration, 0.0..n_mels as f64)?;
    let axis = TimeAxis {
        y_desc: "mel band",
        y_labels: 10,
        y_format: &|v| format!("{v:.0}"),
        y_grid: false,
    };
    axis.draw(&mut chart)?;
    let max = log_mel.data.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let floor = max - SPECTROGRAM_RANGE_DB;
    let frame_s = duration / n_frames.max(1) as f64;
    let cells = (0..n_mels).flat_map(|m| {
        (0..n_frames).map(move |t| {
            let value = ((log_mel.data[m * n_frames + t] - floor) / SPECTROGRAM_RANGE_DB).clamp(0.0, 1.0);
            let (x0, x1) = (t as f64 * frame_s, (t + 1) as f64 * frame_s);
            Rectangle::new(
                [(x0, m as f64), (x1, (m + 1) as f64)],
                ViridisRGB::get_color(f64::from(value)).filled(),
            )
        })
    });
    chart.draw_series(cells).map_err(|e| err(&e))?;
    colour_bar(&scale_area)
}

/// The spectrogram's colour scale: dB below the clip's loudest cell.
fn colour_bar(area: &Area) -> Result<(), String> {
    let err = |e: &dyn std::fmt::Display| e.to_string();
    let range = f64::from(SPECTROGRAM_RANGE_DB);
    let mut chart = ChartBuilder::on(area)
        .margin_top(32)
        .margin_right(10)
        .x_label_area_size(30)
        .y_label_area_size(62)
        .build_cartesian_2d(0.0..1.0, -range..0.0)
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .disable_mesh()
        .disable_x_axis()
        .y_desc("dB re max")
        .y_labels(5)
        .y_label_formatter(&|v| format!("{v:.0}"))
        .label_style((FONT_NAME, 13))
        .axis_desc_style((FONT_NAME, 13))
        .draw()
        .map_err(|e| err(&e))?;
    let steps = 64;
    let strips = (0..steps).map(|i| {
        let (low, high) = (i as f64 / steps as f64, (i + 1) as f64 / steps as f64);
        Rectangle::new(
            [(0.0, -range + low * range), (1.0, -range + high * range)],
            ViridisRGB::get_color(low).filled(),
        )
    });
    chart.draw_series(strips).map_err(|e| err(&e))?;
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
        y_format: &|v| signed(*v),
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

/// Shapley values as bars, green where they raise the explained class's probability.
fn bar_chart(area: &Area, title: &str, attribution: &Attribution) -> Result<(), String> {
    let values = &attribution.shapley.values;
    let extent = values.iter().fold(1e-6f64, |m, v| m.max(v.abs())) * 1.2;
    bars(
        area,
        title,
        &attribution.players,
        values,
        -extent..extent,
        &|v| signed(*v),
        &|_, v| if v >= 0.0 { POSITIVE } else { NEGATIVE },
    )
}

/// `v` with its sign and two decimals; a value that rounds to zero is "0"
/// (never "-0.00").
fn signed(v: f64) -> String {
    if (v * 100.0).round() == 0.0 {
        "0".to_owned()
    } else {
        format!("{v:+.2}")
    }
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
                PREDICTED
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
    // A zero line: up and down are read from it.
    chart
        .draw_series(std::iter::once(PathElement::new(
            vec![(0.0, 0.0), (n as f64, 0.0)],
            BLACK,
        )))
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

#[cfg(test)]
mod tests {
    use super::signed;

    #[test]
    fn ticks_that_round_to_zero_read_zero_without_a_sign() {
        assert_eq!(signed(-0.001), "0");
        assert_eq!(signed(0.004), "0");
        assert_eq!(signed(-0.25), "-0.25");
        assert_eq!(signed(0.5), "+0.50");
    }
}
