#include "nat/tcp_state.h"

namespace fulcrum::nat {

std::string_view TcpStateName(TcpState state) {
  switch (state) {
    case TcpState::kNone:
      return "none";
    case TcpState::kSynSent:
      return "syn_sent";
    case TcpState::kSynRecv:
      return "syn_recv";
    case TcpState::kEstablished:
      return "established";
    case TcpState::kFinWait:
      return "fin_wait";
    case TcpState::kCloseWait:
      return "close_wait";
    case TcpState::kLastAck:
      return "last_ack";
    case TcpState::kTimeWait:
      return "time_wait";
    case TcpState::kClosed:
      return "closed";
  }
  return "invalid";
}

}  // namespace fulcrum::nat
