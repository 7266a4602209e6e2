/**
 * Test support for other folders' tests of media nodes on a network: namespaces of their own,
 * services brought into them, and a lossy, slow link between nodes. (The WebRTC peers are the
 * other entry, wrtc-peers.ts.)
 */
export { createNetnsLab, type NetnsLab, type NetnsNode, requireNetnsSupport } from './netns.js';
export { forwardTcp, type TcpForwarder } from './tcp-forwarder.js';
export {
  type ImpairmentStats,
  type MirroredNode,
  startUdpImpairmentProxy,
  type UdpImpairmentProxy,
} from './udp-impairment-proxy.js';
