//! Exports for legal discovery: JSON lines, CSV, or one `.eml` file per message (a directory),
//! written record by record as the search streams them (memory stays bounded).

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde_json::json;

use crate::record::{Call, Message, Registration};
use crate::time::format_ms;

/// How records are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Jsonl,
    Csv,
    /// Messages only: a directory of RFC 5322 messages.
    Eml,
}

impl std::str::FromStr for Format {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "jsonl" => Ok(Self::Jsonl),
            "csv" => Ok(Self::Csv),
            "eml" => Ok(Self::Eml),
            other => Err(format!("unknown format '{other}': use jsonl, csv or eml")),
        }
    }
}

/// The body as text when it is text (UTF-8 or ASCII as declared, and valid), else `None`.
pub fn body_text<'a>(content_type: &str, body: &'a [u8]) -> Option<&'a str> {
    let charset = content_type
        .split(';')
        .skip(1)
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("charset"))
        .map(|(_, v)| v.trim().trim_matches('"').to_ascii_lowercase());
    let declared_ok = matches!(
        charset.as_deref(),
        None | Some("utf-8" | "utf8" | "us-ascii" | "ascii")
    );
    let texty = content_type
        .trim_start()
        .to_ascii_lowercase()
        .starts_with("text/")
        || content_type.contains("json")
        || content_type.contains("xml");
    if !declared_ok || !texty {
        return None;
    }
    std::str::from_utf8(body).ok()
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Where an export goes: a file, or for `eml` a directory.
pub struct Exporter {
    format: Format,
    out: Option<BufWriter<File>>,
    dir: Option<PathBuf>,
    header_done: bool,
    pub written: u64,
}

fn cannot(path: &Path, e: &io::Error) -> String {
    format!(
        "cannot write the export to {}: {e}; choose a path in a directory you can write to (--output)",
        path.display()
    )
}

impl Exporter {
    /// Creates the output (refusing to overwrite an existing file or a non-empty directory).
    pub fn create(format: Format, path: &Path) -> Result<Self, String> {
        if format == Format::Eml {
            if path.exists() && fs::read_dir(path).map_or(true, |mut d| d.next().is_some()) {
                return Err(format!(
                    "{} exists and is not an empty directory: eml exports write one file per message into a new directory",
                    path.display()
                ));
            }
            fs::create_dir_all(path).map_err(|e| cannot(path, &e))?;
            return Ok(Self {
                format,
                out: None,
                dir: Some(path.to_owned()),
                header_done: false,
                written: 0,
            });
        }
        let file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(|e| cannot(path, &e))?;
        Ok(Self {
            format,
            out: Some(BufWriter::new(file)),
            dir: None,
            header_done: false,
            written: 0,
        })
    }

    fn line(&mut self, text: &str) -> io::Result<()> {
        let out = self
            .out
            .as_mut()
            .ok_or_else(|| io::Error::other("no output file"))?;
        out.write_all(text.as_bytes())?;
        out.write_all(b"\n")
    }

    fn csv_header(&mut self, columns: &str) -> io::Result<()> {
        if !self.header_done {
            self.header_done = true;
            self.line(columns)?;
        }
        Ok(())
    }

    pub fn message(&mut self, m: &Message) -> io::Result<()> {
        self.written += 1;
        let text = body_text(&m.content_type, &m.body);
        match self.format {
            Format::Jsonl => {
                let mut v = json!({
                    "id": m.id, "time": format_ms(m.at_ms), "sender": m.sender,
                    "recipients": m.recipients, "conversation": m.conversation,
                    "direction": m.direction.as_str(), "content_type": m.content_type,
                    "server": m.server,
                });
                match text {
                    Some(t) => v["body"] = t.into(),
                    None => v["body_base64"] = b64(&m.body).into(),
                }
                self.line(&v.to_string())
            }
            Format::Csv => {
                self.csv_header("id,time,sender,recipients,conversation,direction,content_type,body_encoding,body")?;
                let (enc, body) = match text {
                    Some(t) => ("text", t.to_owned()),
                    None => ("base64", b64(&m.body)),
                };
                let row = [
                    m.id.clone(),
                    format_ms(m.at_ms),
                    m.sender.clone(),
                    m.recipients.join(" "),
                    m.conversation.clone(),
                    m.direction.as_str().into(),
                    m.content_type.clone(),
                    enc.into(),
                    body,
                ];
                self.line(&csv_row(&row))
            }
            Format::Eml => {
                let dir = self.dir.clone().unwrap_or_default();
                let name = format!("{:06}-{}.eml", self.written, safe_name(&m.id));
                fs::write(dir.join(name), eml(m))
            }
        }
    }

    pub fn call(&mut self, c: &Call) -> io::Result<()> {
        self.written += 1;
        match self.format {
            Format::Jsonl => {
                let v = json!({
                    "id": c.id, "call_id": c.call_id, "caller": c.caller, "callee": c.callee,
                    "start": format_ms(c.start_ms), "answer": c.answer_ms.map(format_ms),
                    "end": format_ms(c.end_ms), "duration_s": c.duration_s(), "status": c.status,
                    "reason": c.reason, "ended_by": c.ended_by, "route": c.route, "trunk": c.trunk,
                    "servers": c.servers,
                });
                self.line(&v.to_string())
            }
            _ => {
                self.csv_header("id,call_id,caller,callee,start,answer,end,duration_s,status,reason,ended_by,route,trunk,servers")?;
                let row = [
                    c.id.clone(),
                    c.call_id.clone(),
                    c.caller.clone(),
                    c.callee.clone(),
                    format_ms(c.start_ms),
                    c.answer_ms.map(format_ms).unwrap_or_default(),
                    format_ms(c.end_ms),
                    c.duration_s().to_string(),
                    c.status.to_string(),
                    c.reason.clone(),
                    c.ended_by.clone(),
                    c.route.clone().unwrap_or_default(),
                    c.trunk.clone().unwrap_or_default(),
                    c.servers.join(" "),
                ];
                self.line(&csv_row(&row))
            }
        }
    }

    pub fn registration(&mut self, r: &Registration) -> io::Result<()> {
        self.written += 1;
        match self.format {
            Format::Jsonl => {
                let v = json!({
                    "id": r.id, "time": format_ms(r.at_ms), "user": r.user, "event": r.event,
                    "client": r.client, "address": r.address, "server": r.server,
                });
                self.line(&v.to_string())
            }
            _ => {
                self.csv_header("id,time,user,event,client,address,server")?;
                let row = [
                    r.id.clone(),
                    format_ms(r.at_ms),
                    r.user.clone(),
                    r.event.clone(),
                    r.client.clone(),
                    r.address.clone(),
                    r.server.clone(),
                ];
                self.line(&csv_row(&row))
            }
        }
    }

    /// Flushes the output; what it wrote.
    pub fn finish(mut self) -> io::Result<u64> {
        if let Some(out) = self.out.as_mut() {
            out.flush()?;
            out.get_ref().sync_all()?;
        }
        Ok(self.written)
    }
}

fn safe_name(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// RFC 4180: a field with a comma, quote or line break is quoted, quotes doubled.
fn csv_row(fields: &[String]) -> String {
    fields
        .iter()
        .map(|f| {
            if f.contains([',', '"', '\n', '\r']) {
                format!("\"{}\"", f.replace('"', "\"\""))
            } else {
                f.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// A message as an RFC 5322 message: the body as sent, base64-encoded under its own
/// Content-Type, so any charset or binary body comes out byte for byte.
pub fn eml(m: &Message) -> Vec<u8> {
    let date = jiff::Timestamp::from_millisecond(m.at_ms)
        .ok()
        .and_then(|t| jiff::fmt::rfc2822::to_string(&t.to_zoned(jiff::tz::TimeZone::UTC)).ok())
        .unwrap_or_default();
    let clean = |s: &str| s.replace(['\r', '\n'], " ");
    let to: Vec<String> = m
        .recipients
        .iter()
        .map(|r| format!("<{}>", clean(r)))
        .collect();
    let encoded = b64(&m.body);
    let mut body = String::new();
    for chunk in encoded.as_bytes().chunks(76) {
        body.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        body.push_str("\r\n");
    }
    format!(
        "From: <{}>\r\nTo: {}\r\nDate: {date}\r\nSubject: Instant message\r\nMessage-ID: <{}@archive.confab>\r\nX-Confab-Conversation: {}\r\nX-Confab-Direction: {}\r\nX-Confab-Server: {}\r\nMIME-Version: 1.0\r\nContent-Type: {}\r\nContent-Transfer-Encoding: base64\r\n\r\n{body}",
        clean(&m.sender),
        to.join(", "),
        safe_name(&m.id),
        clean(&m.conversation),
        m.direction.as_str(),
        clean(&m.server),
        clean(&m.content_type),
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_text_only_when_its_charset_says_so_and_it_decodes() {
        assert_eq!(body_text("text/plain", b"hi"), Some("hi"));
        assert_eq!(
            body_text("text/plain; charset=UTF-8", "é".as_bytes()),
            Some("é")
        );
        assert_eq!(body_text("text/plain;charset=iso-8859-1", b"caf\xe9"), None);
        assert_eq!(body_text("text/plain", b"\xff\xfe"), None);
        assert_eq!(body_text("application/octet-stream", b"abc"), None);
    }

    #[test]
    fn csv_quotes_what_needs_quoting() {
        let row = csv_row(&["a".into(), "b,c".into(), "say \"hi\"\nthere".into()]);
        assert_eq!(row, "a,\"b,c\",\"say \"\"hi\"\"\nthere\"");
    }
}
