// SPDX-License-Identifier: Apache-2.0

//! Python bindings for `baseten-core`: type conversion and error mapping only.
//!
//! Built as `livekit.plugins.baseten._native`; the typed surface is `_native.pyi`.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::sync::critical_section::with_critical_section;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyByteArray, PyBytes, PyDict, PyList, PyMemoryView, PyString, PyType};
use pyo3::{intern, IntoPyObjectExt};

use std::borrow::Cow;

use baseten_core::mulaw::MuLaw;
use baseten_core::pcm::sample_count;
use baseten_core::pipeline::{self, Framing, WireEncoding};
use baseten_core::qwen3;
use baseten_core::rebuffer;
use baseten_core::transcript::{self, ServerMessage};
use baseten_core::AudioError;

fn value_error(e: impl std::fmt::Display) -> PyErr {
    PyValueError::new_err(e.to_string())
}

fn mulaw_flavour(name: &str) -> PyResult<MuLaw> {
    match name {
        "g711" => Ok(MuLaw::G711),
        "continuous" => Ok(MuLaw::Continuous),
        other => Err(PyValueError::new_err(format!(
            "unknown mu-law flavour {other:?}: expected \"g711\" or \"continuous\""
        ))),
    }
}

/// Audio bytes from Python: `bytes` and `bytearray` are used in place; any other buffer
/// (memoryview, array) is copied once, because the buffer protocol is not part of the abi3
/// API below Python 3.11.
enum Pcm<'py> {
    Bytes(Bound<'py, PyBytes>),
    ByteArray(Bound<'py, PyByteArray>),
}

impl<'py> Pcm<'py> {
    fn extract(obj: &Bound<'py, PyAny>) -> PyResult<Self> {
        if let Ok(b) = obj.cast::<PyBytes>() {
            return Ok(Pcm::Bytes(b.clone()));
        }
        if let Ok(b) = obj.cast::<PyByteArray>() {
            return Ok(Pcm::ByteArray(b.clone()));
        }
        // memoryview() refuses objects without the buffer protocol (e.g. an int, which
        // bytes() would turn into zeros).
        let view = PyMemoryView::from(obj)?;
        let copied = obj.py().get_type::<PyBytes>().call1((view,))?.cast_into::<PyBytes>()?;
        Ok(Pcm::Bytes(copied))
    }

    /// Runs `f` on the bytes without copying them. `f` must not call into Python.
    fn with_slice<R>(&self, f: impl FnOnce(&[u8]) -> R) -> R {
        match self {
            Pcm::Bytes(b) => f(b.as_bytes()),
            Pcm::ByteArray(b) => with_critical_section(b.as_any(), || {
                // SAFETY: nothing can resize or free the bytearray while the slice is alive:
                // the GIL is held, or on a free-threaded build the bytearray's critical section,
                // which only a call back into Python could suspend, and `f` makes none.
                f(unsafe { b.as_bytes() })
            }),
        }
    }

    /// The bytes, for callers that allocate Python objects while reading them: a bytearray is
    /// copied first, since such a call could suspend its critical section.
    fn to_cow(&self) -> Cow<'_, [u8]> {
        match self {
            Pcm::Bytes(b) => Cow::Borrowed(b.as_bytes()),
            Pcm::ByteArray(_) => Cow::Owned(self.with_slice(<[u8]>::to_vec)),
        }
    }
}

/// Runs `fill` on a cleared scratch buffer, then returns what it appended as one `bytes` per
/// frame of `frame_bytes` (the last may be shorter).
fn frames_from<'py>(
    py: Python<'py>,
    scratch: &mut Vec<u8>,
    frame_bytes: usize,
    fill: impl FnOnce(&mut Vec<u8>) -> Result<usize, AudioError>,
) -> PyResult<Bound<'py, PyList>> {
    scratch.clear();
    fill(scratch).map_err(value_error)?;
    PyList::new(py, scratch.chunks(frame_bytes).map(|f| PyBytes::new(py, f)))
}

/// The per-stream send path: int16 PCM at any rate and channel count in, Baseten wire frames
/// out (see `baseten_core::pipeline`).
#[pyclass(module = "livekit.plugins.baseten._native")]
struct SendPipeline {
    inner: pipeline::SendPipeline,
    scratch: Vec<u8>,
}

#[pymethods]
impl SendPipeline {
    #[new]
    #[pyo3(signature = (input_rate, channels, encoding, mulaw_flavour = "continuous", *, websocket = false))]
    fn new(
        input_rate: u32,
        channels: u32,
        encoding: &str,
        mulaw_flavour: &str,
        websocket: bool,
    ) -> PyResult<Self> {
        let flavour = self::mulaw_flavour(mulaw_flavour)?;
        let encoding = match encoding {
            "pcm_s16le" => WireEncoding::PcmS16le,
            "pcm_mulaw" => WireEncoding::PcmMulaw(flavour),
            other => {
                return Err(PyValueError::new_err(format!(
                    "unknown encoding {other:?}: expected \"pcm_s16le\" or \"pcm_mulaw\""
                )))
            }
        };
        let framing = if websocket { Framing::WebSocket } else { Framing::Raw };
        let inner = pipeline::SendPipeline::new(input_rate, channels, encoding)
            .map_err(value_error)?
            .with_framing(framing);
        let scratch = Vec::with_capacity(inner.frame_len() * 4);
        Ok(Self { inner, scratch })
    }

    #[getter]
    fn input_rate(&self) -> u32 {
        self.inner.input_rate()
    }

    #[getter]
    fn channels(&self) -> u32 {
        self.inner.channels()
    }

    #[getter]
    fn wire_rate(&self) -> u32 {
        self.inner.encoding().sample_rate()
    }

    #[getter]
    fn frame_bytes(&self) -> usize {
        self.inner.encoding().frame_bytes()
    }

    #[getter]
    fn websocket(&self) -> bool {
        self.inner.framing() == Framing::WebSocket
    }

    #[getter]
    fn added_latency_s(&self) -> f64 {
        self.inner.added_latency_s()
    }

    #[getter]
    fn pending_samples(&self) -> usize {
        self.inner.pending_samples()
    }

    #[pyo3(signature = (pcm, sample_rate = None, channels = None))]
    fn push<'py>(
        &mut self,
        py: Python<'py>,
        pcm: &Bound<'py, PyAny>,
        sample_rate: Option<u32>,
        channels: Option<u32>,
    ) -> PyResult<Bound<'py, PyList>> {
        check_format(sample_rate, channels, |rate, channels| {
            self.inner.check_format(rate, channels)
        })?;
        let pcm = Pcm::extract(pcm)?;
        let inner = &mut self.inner;
        let frame_len = inner.frame_len();
        frames_from(py, &mut self.scratch, frame_len, |out| {
            pcm.with_slice(|data| inner.push(data, out))
        })
    }

    #[pyo3(signature = (pad = true))]
    fn flush<'py>(&mut self, py: Python<'py>, pad: bool) -> PyResult<Bound<'py, PyList>> {
        let inner = &mut self.inner;
        let frame_len = inner.frame_len();
        frames_from(py, &mut self.scratch, frame_len, |out| inner.flush(pad, out))
    }
}

/// Qwen3-ASR's send path: int16 PCM at any rate and channel count in, JSON append messages
/// (100 ms of base64 16 kHz audio each) out (see `baseten_core::qwen3`).
#[pyclass(module = "livekit.plugins.baseten._native")]
struct AppendPipeline {
    inner: qwen3::AppendPipeline,
    scratch: Vec<u8>,
}

impl AppendPipeline {
    /// The messages `fill` appended to the scratch buffer, one `bytes` each; a commit after
    /// the last message goes into that message's `bytes`.
    fn messages<'py>(
        &mut self,
        py: Python<'py>,
        fill: impl FnOnce(&mut qwen3::AppendPipeline, &mut Vec<u8>) -> Result<usize, AudioError>,
    ) -> PyResult<Bound<'py, PyList>> {
        self.scratch.clear();
        let n = fill(&mut self.inner, &mut self.scratch).map_err(value_error)?;
        let len = self.inner.message_len();
        let out = &self.scratch;
        PyList::new(
            py,
            (0..n).map(|i| {
                let end = if i + 1 == n { out.len() } else { (i + 1) * len };
                PyBytes::new(py, &out[i * len..end])
            }),
        )
    }
}

#[pymethods]
impl AppendPipeline {
    #[new]
    #[pyo3(signature = (input_rate, channels, *, websocket = false))]
    fn new(input_rate: u32, channels: u32, websocket: bool) -> PyResult<Self> {
        let inner =
            qwen3::AppendPipeline::new(input_rate, channels, websocket).map_err(value_error)?;
        let scratch = Vec::with_capacity(inner.message_len() * 2 + inner.commit_len());
        Ok(Self { inner, scratch })
    }

    #[getter]
    fn input_rate(&self) -> u32 {
        self.inner.input_rate()
    }

    #[getter]
    fn channels(&self) -> u32 {
        self.inner.channels()
    }

    #[getter]
    fn websocket(&self) -> bool {
        self.inner.websocket()
    }

    #[getter]
    fn message_bytes(&self) -> usize {
        self.inner.message_len()
    }

    #[getter]
    fn added_latency_s(&self) -> f64 {
        self.inner.added_latency_s()
    }

    #[getter]
    fn pending_samples(&self) -> usize {
        self.inner.pending_samples()
    }

    #[pyo3(signature = (pcm, sample_rate = None, channels = None))]
    fn push<'py>(
        &mut self,
        py: Python<'py>,
        pcm: &Bound<'py, PyAny>,
        sample_rate: Option<u32>,
        channels: Option<u32>,
    ) -> PyResult<Bound<'py, PyList>> {
        check_format(sample_rate, channels, |rate, channels| {
            self.inner.check_format(rate, channels)
        })?;
        let pcm = Pcm::extract(pcm)?;
        self.messages(py, |inner, out| pcm.with_slice(|data| inner.push(data, out)))
    }

    #[pyo3(signature = (commit = true))]
    fn flush<'py>(&mut self, py: Python<'py>, commit: bool) -> PyResult<Bound<'py, PyList>> {
        self.messages(py, |inner, out| inner.flush(commit, out))
    }
}

/// The code of a language as Qwen3-ASR names it ("English" -> "en"), or None.
#[pyfunction]
fn qwen3_language_code(name: &str) -> Option<&'static str> {
    qwen3::language_code(name)
}

/// The name Qwen3 models use for a language code or BCP 47 tag ("en-US" -> "English"), or
/// None.
#[pyfunction]
fn qwen3_language_name(code: &str) -> Option<&'static str> {
    qwen3::language_name(code)
}

/// Rebuffers a byte stream into frames of a fixed size, like livekit-agents'
/// `AudioByteStream`, with optional zero-padding of the last frame.
#[pyclass(module = "livekit.plugins.baseten._native")]
struct Rebuffer {
    inner: rebuffer::Rebuffer,
    scratch: Vec<u8>,
}

#[pymethods]
impl Rebuffer {
    #[new]
    #[pyo3(signature = (frame_bytes, sample_bytes = 2))]
    fn new(frame_bytes: usize, sample_bytes: usize) -> PyResult<Self> {
        let inner = rebuffer::Rebuffer::new(frame_bytes, sample_bytes).map_err(value_error)?;
        Ok(Self { inner, scratch: Vec::new() })
    }

    #[getter]
    fn frame_bytes(&self) -> usize {
        self.inner.frame_bytes()
    }

    #[getter]
    fn buffered_bytes(&self) -> usize {
        self.inner.buffered_bytes()
    }

    fn push<'py>(
        &mut self,
        py: Python<'py>,
        data: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyList>> {
        let data = Pcm::extract(data)?;
        let inner = &mut self.inner;
        let frame_bytes = inner.frame_bytes();
        frames_from(py, &mut self.scratch, frame_bytes, |out| {
            data.with_slice(|d| Ok(inner.push(d, out)))
        })
    }

    #[pyo3(signature = (pad = false))]
    fn flush<'py>(&mut self, py: Python<'py>, pad: bool) -> PyResult<Bound<'py, PyList>> {
        let inner = &mut self.inner;
        let frame_bytes = inner.frame_bytes();
        frames_from(py, &mut self.scratch, frame_bytes, |out| Ok(inner.flush(pad, out)))
    }

    fn clear(&mut self) {
        self.inner.clear();
    }
}

/// Reseeds the calling thread's WebSocket masking-key generator: for a process just forked.
#[pyfunction]
fn reseed_masks() {
    baseten_core::websocket::reseed_masks();
}

/// Checks a push's declared format with `check` when it gives both rate and channels; a
/// push that gives one without the other is refused.
fn check_format(
    sample_rate: Option<u32>,
    channels: Option<u32>,
    check: impl FnOnce(u32, u32) -> Result<(), AudioError>,
) -> PyResult<()> {
    match (sample_rate, channels) {
        (Some(rate), Some(channels)) => check(rate, channels).map_err(value_error),
        (None, None) => Ok(()),
        _ => Err(PyValueError::new_err("give both sample_rate and channels, or neither")),
    }
}

/// Encodes little-endian int16 PCM as mu-law.
#[pyfunction]
#[pyo3(signature = (pcm, flavour = "g711"))]
fn mulaw_encode<'py>(
    py: Python<'py>,
    pcm: &Bound<'py, PyAny>,
    flavour: &str,
) -> PyResult<Bound<'py, PyBytes>> {
    let law = mulaw_flavour(flavour)?;
    let pcm = Pcm::extract(pcm)?;
    let data = pcm.to_cow();
    let n = sample_count(&data).map_err(value_error)?;
    PyBytes::new_with(py, n, |out| law.encode_s16le_into(&data, out).map_err(value_error))
}

/// Decodes mu-law bytes to little-endian int16 PCM.
#[pyfunction]
#[pyo3(signature = (ulaw, flavour = "g711"))]
fn mulaw_decode<'py>(
    py: Python<'py>,
    ulaw: &Bound<'py, PyAny>,
    flavour: &str,
) -> PyResult<Bound<'py, PyBytes>> {
    let law = mulaw_flavour(flavour)?;
    let ulaw = Pcm::extract(ulaw)?;
    let data = ulaw.to_cow();
    PyBytes::new_with(py, data.len() * 2, |out| {
        law.decode_to_s16le_into(&data, out).map_err(value_error)
    })
}

/// A partial or final transcript, with its times on the stream's timeline (see
/// `parse_message`).
#[pyclass(frozen, get_all, module = "livekit.plugins.baseten._native")]
struct Transcription {
    is_final: bool,
    text: Py<PyString>,
    language: Option<Py<PyString>>,
    start: f64,
    end: f64,
    /// Where the transcript starts in the connection's own audio, in seconds (after clamping).
    audio_start: f64,
    /// Where the transcript ends in the connection's own audio, in seconds (after clamping).
    audio_end: f64,
    /// Whether the times reached past the audio sent and were clamped to it.
    clamped: bool,
    confidence: Option<f64>,
    /// `list[livekit.agents.types.TimedString]`.
    words: Py<PyList>,
    audio_length_sec: Option<f64>,
    is_end_of_audio_flush: bool,
    transcription_num: Option<i64>,
}

#[pymethods]
impl Transcription {
    fn __repr__(&self, py: Python<'_>) -> String {
        format!(
            "Transcription(is_final={}, text={:?}, start={}, end={}, words={})",
            self.is_final,
            self.text.bind(py).to_string(),
            self.start,
            self.end,
            self.words.bind(py).len()
        )
    }
}

/// The server's reply to `end_audio` (`status` is "acknowledged", then "finished").
#[pyclass(frozen, get_all, module = "livekit.plugins.baseten._native")]
struct EndAudio {
    status: Option<String>,
}

/// The server's reply to `health_check`.
#[pyclass(frozen, get_all, module = "livekit.plugins.baseten._native")]
struct HealthCheck {
    healthy: Option<bool>,
    partial_interval: Option<f64>,
}

/// An `error` message from the server.
#[pyclass(frozen, get_all, module = "livekit.plugins.baseten._native")]
struct ServerError {
    error_type: Option<String>,
    message: Option<String>,
    stream_id: Option<String>,
    recoverable: bool,
}

/// A message of a type this version does not know.
#[pyclass(frozen, get_all, module = "livekit.plugins.baseten._native")]
struct UnknownMessage {
    kind: String,
}

/// Builds `livekit.agents.types.TimedString`s at a fraction of the cost of its constructor,
/// and invisible to Python's cyclic garbage collector.
///
/// A TimedString is a `str` subclass whose attributes are set by a Python `__new__`. The fast
/// path is `str.__new__(TimedString, text)` plus the same attribute stores, in the same order,
/// as the real constructor (learnt once from a TimedString it made, so every attribute it sets,
/// including any a later livekit-agents adds, is present with the same default). At first use
/// the fast path is checked against the real constructor: the same type, text and attributes,
/// and every default one object shared by all words (a default made fresh per word, such as a
/// list, cannot be copied this way). If anything disagrees, or the attributes cannot be read
/// (a TimedString with `__slots__`, say), the real constructor is used instead.
///
/// Why untracked: at hundreds of streams the words of transcripts on their way to the agent
/// were most of the objects each young garbage collection walked and promoted (a 40-word final
/// is 40 of them, each with its `__dict__`), and the collector can never free one. A word as
/// built refers only to its class, floats, `None` and the constructor's shared defaults, none
/// of which refers back to a word, so it is in no reference cycle; reference counting frees it
/// as before. A word with a probability has only untracked values in its `__dict__` (without
/// one, `confidence` is the tracked NOT_GIVEN), and CPython leaves such a dict untracked too
/// (the old copy of a template dict, holding NOT_GIVEN, was always tracked). The contract
/// this asks of consumers: do not make a word refer back to itself through its attributes (a
/// cycle through an untracked object is never collected). Nothing in livekit-agents sets
/// attributes on words.
struct TimedStringFactory {
    cls: Py<PyType>,
    str_new: Py<PyAny>,
    /// The constructor's attributes, in the order it sets them.
    attributes: Vec<(Py<PyString>, Attribute)>,
    fast: bool,
}

/// Where the value of one of TimedString's attributes comes from.
enum Attribute {
    Start,
    End,
    Offset,
    /// The word's probability, or the constructor's default when there is none.
    Confidence(Py<PyAny>),
    /// An attribute the server does not set: the constructor's default.
    Default(Py<PyAny>),
}

impl TimedStringFactory {
    fn get(py: Python<'_>) -> PyResult<&Self> {
        static FACTORY: PyOnceLock<TimedStringFactory> = PyOnceLock::new();
        FACTORY.get_or_try_init(py, || {
            let cls =
                py.import("livekit.agents.types")?.getattr("TimedString")?.cast_into::<PyType>()?;
            let str_new = py.get_type::<PyString>().getattr(intern!(py, "__new__"))?;
            let attributes = Self::constructor_attributes(&cls).ok();
            let fast = attributes.is_some();
            let mut factory = TimedStringFactory {
                cls: cls.unbind(),
                str_new: str_new.unbind(),
                attributes: attributes.unwrap_or_default(),
                fast,
            };
            factory.fast = fast && factory.fast_path_matches(py).unwrap_or(false);
            Ok(factory)
        })
    }

    /// The attributes the constructor sets, in its order, read from a TimedString it made.
    fn constructor_attributes(cls: &Bound<'_, PyType>) -> PyResult<Vec<(Py<PyString>, Attribute)>> {
        let py = cls.py();
        let template = cls.call1(("",))?.getattr(intern!(py, "__dict__"))?.cast_into::<PyDict>()?;
        template
            .iter()
            .map(|(name, default)| {
                let attribute = match name.extract::<&str>()? {
                    "start_time" => Attribute::Start,
                    "end_time" => Attribute::End,
                    "start_time_offset" => Attribute::Offset,
                    "confidence" => Attribute::Confidence(default.unbind()),
                    _ => Attribute::Default(default.unbind()),
                };
                Ok((name.cast_into::<PyString>()?.unbind(), attribute))
            })
            .collect()
    }

    /// Whether the fast path builds the same object as the constructor.
    fn fast_path_matches(&self, py: Python<'_>) -> PyResult<bool> {
        let fast = self.make(py, "w", 1.0, 2.0, Some(0.5), 0.25)?;
        let real = self.construct(py, "w", 1.0, 2.0, Some(0.5), 0.25)?;
        let other = self.construct(py, "w", 1.0, 2.0, None, 0.25)?;
        let dict = intern!(py, "__dict__");
        // Defaults are copied by reference: right only if the constructor shares them too.
        for (name, attribute) in &self.attributes {
            let (word, default) = match attribute {
                Attribute::Default(default) => (&real, default),
                Attribute::Confidence(default) => (&other, default),
                _ => continue,
            };
            if !word.getattr(name.bind(py))?.is(default.bind(py)) {
                return Ok(false);
            }
        }
        Ok(fast.get_type().is(real.get_type())
            && fast.eq(&real)?
            && fast.getattr(dict)?.eq(real.getattr(dict)?)?)
    }

    fn make<'py>(
        &self,
        py: Python<'py>,
        text: &str,
        start: f64,
        end: f64,
        confidence: Option<f64>,
        offset: f64,
    ) -> PyResult<Bound<'py, PyAny>> {
        let word = if self.fast {
            let word = self.str_new.bind(py).call1((self.cls.bind(py), text))?;
            let (start, end, offset) =
                (start.into_pyobject(py)?, end.into_pyobject(py)?, offset.into_pyobject(py)?);
            let confidence = confidence.map(|c| c.into_pyobject(py)).transpose()?;
            for (name, attribute) in &self.attributes {
                let value = match attribute {
                    Attribute::Start => start.as_any(),
                    Attribute::End => end.as_any(),
                    Attribute::Offset => offset.as_any(),
                    Attribute::Confidence(default) => {
                        confidence.as_ref().map_or(default.bind(py), |c| c.as_any())
                    }
                    Attribute::Default(default) => default.bind(py),
                };
                word.setattr(name.bind(py), value)?;
            }
            word
        } else {
            self.construct(py, text, start, end, confidence, offset)?
        };
        let ptr = word.as_ptr();
        // SAFETY: `ptr` is a live object we hold a reference to (`word`). `PyObject_GC_UnTrack`
        // reads the collector's header in front of the object, which only objects of GC types
        // have: `PyObject_GC_IsTracked` checks for one first (and is true only for a tracked
        // object of a GC type), so a constructor that ever returned a plain `str` is left
        // alone. Untracking a tracked object is always memory-safe; the type's doc comment says
        // why it is also right here.
        unsafe {
            if pyo3::ffi::PyObject_GC_IsTracked(ptr) == 1 {
                pyo3::ffi::PyObject_GC_UnTrack(ptr.cast());
            }
        }
        Ok(word)
    }

    /// The real constructor, with keyword arguments (an absent confidence stays NOT_GIVEN).
    fn construct<'py>(
        &self,
        py: Python<'py>,
        text: &str,
        start: f64,
        end: f64,
        confidence: Option<f64>,
        offset: f64,
    ) -> PyResult<Bound<'py, PyAny>> {
        let kwargs = PyDict::new(py);
        kwargs.set_item(intern!(py, "start_time"), start)?;
        kwargs.set_item(intern!(py, "end_time"), end)?;
        if let Some(c) = confidence {
            kwargs.set_item(intern!(py, "confidence"), c)?;
        }
        kwargs.set_item(intern!(py, "start_time_offset"), offset)?;
        self.cls.bind(py).call((text,), Some(&kwargs))
    }
}

/// Parses one text message from Baseten's Whisper server (or, with `qwen3`, its Qwen3-ASR
/// server, whose language names become codes). Raises `ValueError` on malformed JSON or fields
/// of the wrong type.
///
/// A transcript's times count from the start of its connection's audio. They are clamped to
/// `audio_sent` (the seconds of audio that connection was sent) when they reach past it by
/// more than the slack Whisper needs, then moved onto the caller's timeline: `origin` (where
/// the connection's audio began in the stream's input) plus `time_offset` (the caller's
/// `start_time_offset`, which words also carry as their own).
#[pyfunction]
#[pyo3(signature = (text, time_offset = 0.0, origin = 0.0, audio_sent = f64::INFINITY, *, qwen3 = false))]
fn parse_message<'py>(
    py: Python<'py>,
    text: &str,
    time_offset: f64,
    origin: f64,
    audio_sent: f64,
    qwen3: bool,
) -> PyResult<Bound<'py, PyAny>> {
    let message =
        if qwen3 { qwen3::parse(text) } else { transcript::parse(text) }.map_err(value_error)?;
    match message {
        ServerMessage::Transcription(mut t) => {
            let clamped = t.clamp_to_audio(audio_sent);
            let (audio_start, audio_end) = (t.start, t.end);
            let t = t.shifted(origin + time_offset);
            let words = PyList::empty(py);
            if !t.words.is_empty() {
                let factory = TimedStringFactory::get(py)?;
                for w in &t.words {
                    words.append(factory.make(
                        py,
                        &w.text,
                        w.start,
                        w.end,
                        w.probability,
                        time_offset,
                    )?)?;
                }
            }
            Transcription {
                is_final: t.is_final,
                confidence: t.confidence(),
                text: PyString::new(py, &t.text).unbind(),
                language: t.language.as_deref().map(|l| PyString::new(py, l).unbind()),
                start: t.start,
                end: t.end,
                audio_start,
                audio_end,
                clamped,
                words: words.unbind(),
                audio_length_sec: t.audio_length_sec,
                is_end_of_audio_flush: t.is_end_of_audio_flush,
                transcription_num: t.transcription_num,
            }
            .into_bound_py_any(py)
        }
        ServerMessage::EndAudio { status } => {
            EndAudio { status: status.map(Into::into) }.into_bound_py_any(py)
        }
        ServerMessage::HealthCheck { healthy, partial_interval } => {
            HealthCheck { healthy, partial_interval }.into_bound_py_any(py)
        }
        ServerMessage::Error(e) => ServerError {
            error_type: e.error_type.map(Into::into),
            message: e.message.map(Into::into),
            stream_id: e.stream_id.map(Into::into),
            recoverable: e.recoverable,
        }
        .into_bound_py_any(py),
        ServerMessage::Other(kind) => UnknownMessage { kind: kind.into() }.into_bound_py_any(py),
    }
}

// Free-threading safe: bytearrays are read inside their critical section, classes are
// borrow-checked at run time, and the TimedString factory is initialised once.
#[pymodule(gil_used = false)]
mod _native {
    #[pymodule_export]
    use super::{
        mulaw_decode, mulaw_encode, parse_message, qwen3_language_code, qwen3_language_name,
        reseed_masks, AppendPipeline, EndAudio, HealthCheck, Rebuffer, SendPipeline, ServerError,
        Transcription, UnknownMessage,
    };
}
