//! The one place that talks rtnetlink: a request function that turns acks,
//! dumps and error messages into plain results, plus interface-name lookups.
//!
//! Messages are built here from `netlink-packet-route` types directly (not
//! with rtnetlink's request builders) so that every request has explicit
//! flags: `NLM_F_EXCL` for adds, `NLM_F_REPLACE` for replaces, and the
//! protocol Twill sets rather than rtnetlink's default `static`.

use std::collections::BTreeMap;

use futures::StreamExt;
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::link::{LinkAttribute, LinkMessage};
use nix::errno::Errno;
use rtnetlink::Handle;
use rtnetlink::packet_core::{
    NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REPLACE, NLM_F_REQUEST, NetlinkMessage,
    NetlinkPayload,
};

use crate::error::{KernelError, KernelObject};

/// Flags of a request that must create a new object.
pub(crate) const CREATE_EXCL: u16 = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL;
/// Flags of a request that creates or replaces an object.
pub(crate) const CREATE_REPLACE: u16 = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE;
/// Flags of a request that changes or deletes an existing object.
pub(crate) const CHANGE: u16 = NLM_F_REQUEST | NLM_F_ACK;
/// Flags of a dump request.
pub(crate) const DUMP: u16 = NLM_F_REQUEST | NLM_F_DUMP;
/// Flags of a get request for one object.
pub(crate) const GET: u16 = NLM_F_REQUEST;

/// The answers of a dump of interface-bound objects (addresses, neighbours,
/// FDB entries), kept to those of one interface when one was asked for.
pub(crate) struct LinkDump {
    /// The index of the interface asked for; `None` keeps every interface.
    wanted: Option<u32>,
    /// Interface index to name, for decoding the answers.
    names: BTreeMap<u32, String>,
    /// The dump's answers, unfiltered.
    pub(crate) answers: Vec<RouteNetlinkMessage>,
}

impl LinkDump {
    /// The name of interface `index`, or `None` when it is not the one asked
    /// for or has no name.
    pub(crate) fn link_name(&self, index: u32) -> Option<&String> {
        if self.wanted.is_some_and(|w| w != index) {
            return None;
        }
        self.names.get(&index)
    }
}

/// A connected rtnetlink socket, opened in the namespace of the worker thread
/// that created it.
#[derive(Clone)]
pub(crate) struct Nl {
    handle: Handle,
}

impl Nl {
    pub(crate) fn new(handle: Handle) -> Self {
        Self { handle }
    }

    /// Sends one request and collects the answers. A NACK becomes its errno;
    /// an ACK (error code 0) ends the exchange successfully.
    pub(crate) async fn request(
        &self,
        msg: RouteNetlinkMessage,
        flags: u16,
    ) -> Result<Vec<RouteNetlinkMessage>, Errno> {
        let mut handle = self.handle.clone();
        let mut req = NetlinkMessage::from(msg);
        req.header.flags = flags;
        // The only failure here is a closed connection task.
        let mut answers = handle.request(req).map_err(|_| Errno::EPIPE)?;
        let mut out = Vec::new();
        while let Some(answer) = answers.next().await {
            match answer.payload {
                NetlinkPayload::Error(err) => {
                    if let Some(code) = err.code {
                        return Err(Errno::from_raw(code.get().abs()));
                    }
                }
                NetlinkPayload::InnerMessage(inner) => out.push(inner),
                // Done ends a dump; Noop and Overrun carry nothing for us.
                _ => {}
            }
        }
        Ok(out)
    }

    /// The index of the interface called `name` in this namespace.
    pub(crate) async fn link_index(&self, name: &str) -> Result<u32, KernelError> {
        Ok(self.link_by_name(name).await?.header.index)
    }

    /// The raw link message of the interface called `name`.
    pub(crate) async fn link_by_name(&self, name: &str) -> Result<LinkMessage, KernelError> {
        let object = || KernelObject::Interface(name.to_string());
        if name.is_empty() || name.len() > crate::link::IFNAMSIZ_MAX {
            return Err(KernelError::Invalid {
                object: object(),
                reason: "interface names are 1 to 15 bytes".into(),
            });
        }
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        let answers = self
            .request(RouteNetlinkMessage::GetLink(msg), GET)
            .await
            .map_err(|errno| KernelError::from_errno_existing(object(), "get", errno))?;
        answers
            .into_iter()
            .find_map(|m| match m {
                RouteNetlinkMessage::NewLink(link) => Some(link),
                _ => None,
            })
            .ok_or_else(|| KernelError::NotFound { object: object() })
    }

    /// Every link of this namespace.
    pub(crate) async fn dump_links(&self) -> Result<Vec<LinkMessage>, KernelError> {
        let answers = self
            .request(RouteNetlinkMessage::GetLink(LinkMessage::default()), DUMP)
            .await
            .map_err(|errno| KernelError::Netlink {
                object: KernelObject::Interface("*".into()),
                operation: "dump",
                errno,
            })?;
        Ok(answers
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewLink(link) => Some(link),
                _ => None,
            })
            .collect())
    }

    /// Dumps with `request` the objects of interface `link`, or of every
    /// interface; `operation` names the dump in errors.
    pub(crate) async fn dump_for_link(
        &self,
        link: Option<&str>,
        request: RouteNetlinkMessage,
        operation: &'static str,
    ) -> Result<LinkDump, KernelError> {
        let wanted = match link {
            Some(name) => Some(self.link_index(name).await?),
            None => None,
        };
        let names = self.link_names().await?;
        let answers = self
            .request(request, DUMP)
            .await
            .map_err(|errno| KernelError::Netlink {
                object: KernelObject::Interface(link.unwrap_or("*").to_string()),
                operation,
                errno,
            })?;
        Ok(LinkDump {
            wanted,
            names,
            answers,
        })
    }

    /// Interface index to name, for decoding addresses, routes, neighbours.
    pub(crate) async fn link_names(&self) -> Result<BTreeMap<u32, String>, KernelError> {
        Ok(self
            .dump_links()
            .await?
            .into_iter()
            .filter_map(|link| {
                let index = link.header.index;
                link.attributes.into_iter().find_map(|a| match a {
                    LinkAttribute::IfName(name) => Some((index, name)),
                    _ => None,
                })
            })
            .collect())
    }
}
