//! OPEN messages: what Twill announces, and decoding a peer's OPEN.

use std::io::Cursor;
use std::net::Ipv4Addr;

use netgauze_bgp_pkt::BgpMessage;
use netgauze_bgp_pkt::capabilities::{
    BgpCapability, FourOctetAsCapability, GracefulRestartAddressFamily, GracefulRestartCapability,
    MultiProtocolExtensionsCapability,
};
use netgauze_bgp_pkt::open::{BgpOpenMessage, BgpOpenMessageParameter};
use netgauze_bgp_pkt::wire::deserializer::BgpParsingContext;
use netgauze_bgp_pkt::wire::deserializer::open::{
    BgpOpenMessageParsingError, BgpParameterParsingError,
};
use netgauze_parse_utils::WritablePdu;
use netgauze_parse_utils::reader::SliceReader;
use netgauze_parse_utils::traits::ParseFromWithOneInput;

use super::{AS_TRANS, EncodeError, Family, OpenError, finish};

/// What Twill announces for graceful restart (RFC 4724).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GracefulRestart {
    /// The R bit: this speaker has restarted and its peer should wait for End-of-RIB.
    pub restarting: bool,
    /// Seconds the peer should keep our routes after the session drops (12 bits).
    pub restart_time: u16,
    /// The F bit for every announced family: forwarding state was preserved.
    pub forwarding_preserved: bool,
}

/// The content of Twill's OPEN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenParams {
    /// Local AS; above 65535 the OPEN carries AS_TRANS and the 4-octet AS capability.
    pub local_as: u32,
    /// Proposed hold time in seconds (0, or at least 3).
    pub hold_time: u16,
    /// BGP identifier.
    pub bgp_id: Ipv4Addr,
    /// Address families announced with the multiprotocol capability.
    pub families: Vec<Family>,
    /// Announce route refresh (RFC 2918).
    pub route_refresh: bool,
    /// Announce graceful restart (RFC 4724).
    pub graceful_restart: Option<GracefulRestart>,
}

impl OpenParams {
    /// The capabilities this OPEN announces, in wire order.
    pub fn capabilities(&self) -> Vec<BgpCapability> {
        let mut caps: Vec<BgpCapability> = self
            .families
            .iter()
            .map(|family| {
                BgpCapability::MultiProtocolExtensions(MultiProtocolExtensionsCapability::new(
                    family.address_type(),
                ))
            })
            .collect();
        if self.route_refresh {
            caps.push(BgpCapability::RouteRefresh);
        }
        caps.push(BgpCapability::FourOctetAs(FourOctetAsCapability::new(
            self.local_as,
        )));
        if let Some(gr) = self.graceful_restart {
            let families: Vec<_> = self
                .families
                .iter()
                .map(|f| {
                    GracefulRestartAddressFamily::new(gr.forwarding_preserved, f.address_type())
                })
                .collect();
            caps.push(BgpCapability::GracefulRestartCapability(
                GracefulRestartCapability::new(
                    gr.restarting,
                    false,
                    gr.restart_time.min(0x0fff),
                    families,
                ),
            ));
        }
        caps
    }

    /// The OPEN as netgauze models it.
    pub fn to_message(&self) -> BgpOpenMessage {
        let my_as = u16::try_from(self.local_as).unwrap_or(AS_TRANS);
        BgpOpenMessage::new(
            my_as,
            self.hold_time,
            self.bgp_id,
            vec![BgpOpenMessageParameter::new_capabilities(
                self.capabilities(),
            )],
        )
    }
}

/// Encodes Twill's OPEN.
pub fn encode_open(params: &OpenParams) -> Result<Vec<u8>, EncodeError> {
    let message = BgpMessage::Open(params.to_message());
    let mut out = Vec::with_capacity(64);
    message
        .write(&mut Cursor::new(&mut out))
        .map_err(|e| EncodeError::Serializer {
            reason: e.to_string(),
        })?;
    finish(out)
}

/// Decodes the body of an OPEN (after the 19-octet header).
///
/// Checks what RFC 4271 §6.2 makes syntactic: version 4, a unicast BGP
/// identifier, a hold time that is not 1 or 2, known optional parameter types.
/// Unknown capabilities are ignored (RFC 5492 §3). Whether the peer AS and
/// identifier fit the configuration is the session's decision (see `fsm`).
pub fn decode_open(body: &[u8]) -> Result<BgpOpenMessage, OpenError> {
    if let Some(&version) = body.first()
        && version != 4
    {
        return Err(OpenError::UnsupportedVersion { version });
    }
    let mut ctx = BgpParsingContext::new(
        true,
        Default::default(),
        Default::default(),
        false,
        false,
        false,
        false,
    );
    let mut reader = SliceReader::new(body);
    let open = BgpOpenMessage::parse(&mut reader, &mut ctx).map_err(|error| match error {
        BgpOpenMessageParsingError::UnsupportedVersionNumber { version, .. } => {
            OpenError::UnsupportedVersion { version }
        }
        BgpOpenMessageParsingError::UnacceptableHoldTime { time, .. } => {
            OpenError::UnacceptableHoldTime { hold_time: time }
        }
        BgpOpenMessageParsingError::InvalidBgpId { bgp_id, .. } => {
            OpenError::BadBgpIdentifier { id: bgp_id }
        }
        BgpOpenMessageParsingError::ParameterError(
            BgpParameterParsingError::UndefinedParameterType { code, .. },
        ) => OpenError::UnsupportedOptionalParameter { kind: code },
        other => OpenError::Malformed {
            reason: other.to_string(),
        },
    })?;
    if reader.remaining() != 0 {
        return Err(OpenError::Malformed {
            reason: format!(
                "{} octets after the optional parameters",
                reader.remaining()
            ),
        });
    }
    Ok(open)
}
