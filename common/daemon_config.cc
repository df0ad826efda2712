#include "common/daemon_config.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <cstddef>
#include <fstream>
#include <map>
#include <set>
#include <string>

#include <nlohmann/json.hpp>

namespace fulcrum {
namespace {

using json = nlohmann::json;

constexpr std::size_t kMaxConfigBytes = 1 << 20;
constexpr std::size_t kMaxUnixSocketPath = 107;  // sun_path holds 108 bytes with the NUL

// A DOM parser that keeps the parser's own message ("parse error at line 3, column 5: ...")
// instead of throwing it or discarding it. sax_parse calls parse_error statically, so hiding
// the base member is enough.
class DomParserKeepingError : public nlohmann::detail::json_sax_dom_parser<json> {
 public:
  explicit DomParserKeepingError(json& root)
      : nlohmann::detail::json_sax_dom_parser<json>(root, /*allow_exceptions_=*/false) {}

  template <class Exception>
  bool parse_error(std::size_t /*position*/, const std::string& /*last_token*/,
                   const Exception& ex) {
    error_ = ex.what();
    // Drop the "[json.exception.parse_error.101] " tag: operators read this message.
    if (auto tag_end = error_.find("] ");
        !error_.empty() && error_[0] == '[' && tag_end != std::string::npos) {
      error_.erase(0, tag_end + 2);
    }
    return false;
  }

  const std::string& error() const { return error_; }

 private:
  std::string error_;
};

std::string Quoted(const json& value) { return value.dump(); }

// Reads one JSON object, remembering which keys were consumed so that the rest can be
// reported as unknown. Every error names the full key path.
class ObjectReader {
 public:
  ObjectReader(const json& object, std::string path) : object_(object), path_(std::move(path)) {}

  std::string PathOf(std::string_view key) const {
    return path_.empty() ? std::string(key) : fmt::format("{}.{}", path_, key);
  }

  // nullptr when absent; marks the key as known either way.
  const json* Find(std::string_view key) {
    known_.emplace(key);
    auto it = object_.find(key);
    return it == object_.end() ? nullptr : &*it;
  }

  Status RequirePresent(std::string_view key) {
    if (Find(key) == nullptr) {
      return Error(ErrorCode::kMissingParameter, "{}: missing", PathOf(key));
    }
    return Status::Ok();
  }

  Status ReadString(std::string_view key, std::string* out) {
    const json* value = Find(key);
    if (value == nullptr) {
      return Status::Ok();
    }
    if (!value->is_string()) {
      return TypeError(key, *value, "a string");
    }
    *out = value->get<std::string>();
    return Status::Ok();
  }

  Status ReadBool(std::string_view key, bool* out) {
    const json* value = Find(key);
    if (value == nullptr) {
      return Status::Ok();
    }
    if (!value->is_boolean()) {
      return TypeError(key, *value, "true or false");
    }
    *out = value->get<bool>();
    return Status::Ok();
  }

  Status ReadUint(std::string_view key, std::uint32_t min, std::uint32_t max, std::uint32_t* out) {
    const json* value = Find(key);
    if (value == nullptr) {
      return Status::Ok();
    }
    return ParseUint(*value, PathOf(key), min, max, out);
  }

  static Status ParseUint(const json& value, const std::string& path, std::uint32_t min,
                          std::uint32_t max, std::uint32_t* out) {
    if (!value.is_number_integer()) {
      return Error(ErrorCode::kInvalidParameter, "{}: expected an integer, got {}", path,
                   Quoted(value));
    }
    if (value.is_number_unsigned()) {
      std::uint64_t number = value.get<std::uint64_t>();
      if (number >= min && number <= max) {
        *out = static_cast<std::uint32_t>(number);
        return Status::Ok();
      }
    }
    return Error(ErrorCode::kInvalidParameter, "{}: {} is out of range {}..{}", path, Quoted(value),
                 min, max);
  }

  Status TypeError(std::string_view key, const json& value, std::string_view expected) const {
    return Error(ErrorCode::kInvalidParameter, "{}: expected {}, got {}", PathOf(key), expected,
                 Quoted(value));
  }

  Status CheckNoUnknownKeys() const {
    for (const auto& [key, value] : object_.items()) {
      if (!known_.contains(key)) {
        return Error(ErrorCode::kInvalidParameter, "{}: unknown key", PathOf(key));
      }
    }
    return Status::Ok();
  }

 private:
  const json& object_;
  std::string path_;
  std::set<std::string, std::less<>> known_;
};

Status RequireObject(const json& value, const std::string& path) {
  if (!value.is_object()) {
    return Error(ErrorCode::kInvalidParameter, "{}: expected an object, got {}",
                 path.empty() ? "config" : path, Quoted(value));
  }
  return Status::Ok();
}

Status RequireArray(const json& value, const std::string& path) {
  if (!value.is_array()) {
    return Error(ErrorCode::kInvalidParameter, "{}: expected an array, got {}", path,
                 Quoted(value));
  }
  return Status::Ok();
}

bool IsNameChar(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '_' || c == '-' || c == '.';
}

bool IsName(std::string_view text, std::size_t max_length) {
  return !text.empty() && text.size() <= max_length &&
         std::all_of(text.begin(), text.end(), IsNameChar);
}

bool IsHex(char c) { return std::isxdigit(static_cast<unsigned char>(c)) != 0; }

// "DDDD:BB:DD.F": the PCI address form EAL's -a and ethdev names use.
bool IsPciAddress(std::string_view text) {
  static constexpr std::string_view kShape = "xxxx:xx:xx.f";
  if (text.size() != kShape.size()) {
    return false;
  }
  for (std::size_t i = 0; i < kShape.size(); ++i) {
    char shape = kShape[i];
    char c = text[i];
    bool ok = shape == 'x' ? IsHex(c) : shape == 'f' ? (c >= '0' && c <= '7') : c == shape;
    if (!ok) {
      return false;
    }
  }
  return true;
}

bool HasSpace(std::string_view text) {
  return std::any_of(text.begin(), text.end(),
                     [](char c) { return std::isspace(static_cast<unsigned char>(c)) != 0; });
}

std::string_view DeviceNameOf(std::string_view device_args) {
  return device_args.substr(0, device_args.find(','));
}

Status ValidatePci(const std::string& text, const std::string& path) {
  if (!IsPciAddress(DeviceNameOf(text)) || HasSpace(text)) {
    return Error(ErrorCode::kInvalidParameter,
                 "{}: \"{}\" is not a PCI address (DDDD:BB:DD.F[,devargs])", path, text);
  }
  return Status::Ok();
}

Status ValidateVdev(const std::string& text, const std::string& path) {
  std::string_view name = DeviceNameOf(text);
  bool name_ok = name.size() > 4 && name.substr(0, 4) == "net_" &&
                 std::all_of(name.begin(), name.end(), [](char c) {
                   return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '_';
                 });
  if (!name_ok || HasSpace(text)) {
    return Error(ErrorCode::kInvalidParameter,
                 "{}: \"{}\" is not a DPDK vdev (net_<driver><n>[,args], no spaces)", path, text);
  }
  return Status::Ok();
}

// Which address families a key accepts; errors name them ("not an IPv4 or IPv6 prefix").
enum class Families { kIpv4, kIpv6, kBoth };

std::string_view FamiliesText(Families families) {
  switch (families) {
    case Families::kIpv4:
      return "IPv4";
    case Families::kIpv6:
      return "IPv6";
    case Families::kBoth:
      break;
  }
  return "IPv4 or IPv6";
}

bool Accepts(Families families, const IpAddress& addr) {
  return families == Families::kBoth || addr.is_v4() == (families == Families::kIpv4);
}

Result<IpAddress> ParseIp(const json& value, const std::string& path, Families families) {
  if (!value.is_string()) {
    return Error(ErrorCode::kInvalidParameter, "{}: expected an {} address string, got {}", path,
                 FamiliesText(families), Quoted(value));
  }
  Result<IpAddress> addr = IpAddress::Parse(value.get<std::string>());
  if (!addr.ok() || !Accepts(families, *addr)) {
    return Error(ErrorCode::kInvalidParameter, "{}: {} is not an {} address", path, Quoted(value),
                 FamiliesText(families));
  }
  return addr;
}

Result<Prefix> ParsePrefix(const json& value, const std::string& path, Families families) {
  if (!value.is_string()) {
    return Error(ErrorCode::kInvalidParameter, "{}: expected an {} prefix string, got {}", path,
                 FamiliesText(families), Quoted(value));
  }
  Result<Prefix> prefix = Prefix::Parse(value.get<std::string>());
  if (!prefix.ok() || !Accepts(families, prefix->addr())) {
    return Error(ErrorCode::kInvalidParameter, "{}: {} is not an {} prefix", path, Quoted(value),
                 FamiliesText(families));
  }
  return prefix;
}

Status ParseAbsolutePath(ObjectReader& reader, std::string_view key, std::size_t max_length,
                         std::string* out) {
  FULCRUM_RETURN_IF_ERROR(reader.ReadString(key, out));
  if (out->empty() || (*out)[0] != '/' || out->size() > max_length) {
    return Error(ErrorCode::kInvalidParameter,
                 "{}: \"{}\" is not an absolute path of at most {} bytes", reader.PathOf(key), *out,
                 max_length);
  }
  return Status::Ok();
}

Status ParseEal(const json& value, EalConfig* eal) {
  FULCRUM_RETURN_IF_ERROR(RequireObject(value, "eal"));
  ObjectReader reader(value, "eal");
  FULCRUM_RETURN_IF_ERROR(reader.ReadUint("main_cpu", 0, kMaxCpu, &eal->main_cpu));
  FULCRUM_RETURN_IF_ERROR(reader.ReadBool("no_huge", &eal->no_huge));
  FULCRUM_RETURN_IF_ERROR(reader.ReadUint("memory_mb", 64, 1 << 20, &eal->memory_mb));
  FULCRUM_RETURN_IF_ERROR(reader.ReadString("file_prefix", &eal->file_prefix));
  if (!IsName(eal->file_prefix, 32) || eal->file_prefix.find('.') != std::string::npos) {
    return Error(ErrorCode::kInvalidParameter,
                 "eal.file_prefix: \"{}\" must be 1..32 letters, digits, '_' or '-'",
                 eal->file_prefix);
  }
  if (const json* args = reader.Find("extra_args"); args != nullptr) {
    FULCRUM_RETURN_IF_ERROR(RequireArray(*args, "eal.extra_args"));
    for (std::size_t i = 0; i < args->size(); ++i) {
      const json& arg = (*args)[i];
      if (!arg.is_string() || arg.get<std::string>().empty()) {
        return Error(ErrorCode::kInvalidParameter,
                     "eal.extra_args[{}]: expected a non-empty string, got {}", i, Quoted(arg));
      }
      eal->extra_args.push_back(arg.get<std::string>());
    }
  }
  return reader.CheckNoUnknownKeys();
}

Status ParseWorkers(const json& value, WorkersConfig* workers) {
  FULCRUM_RETURN_IF_ERROR(RequireObject(value, "workers"));
  ObjectReader reader(value, "workers");
  const json* count = reader.Find("count");
  if (count != nullptr) {
    FULCRUM_RETURN_IF_ERROR(
        ObjectReader::ParseUint(*count, "workers.count", 1, kMaxWorkers, &workers->count));
  }
  if (const json* cpus = reader.Find("cpus"); cpus != nullptr) {
    FULCRUM_RETURN_IF_ERROR(RequireArray(*cpus, "workers.cpus"));
    for (std::size_t i = 0; i < cpus->size(); ++i) {
      std::uint32_t cpu = 0;
      FULCRUM_RETURN_IF_ERROR(ObjectReader::ParseUint(
          (*cpus)[i], fmt::format("workers.cpus[{}]", i), 0, kMaxCpu, &cpu));
      workers->cpus.push_back(cpu);
    }
    if (count == nullptr && !workers->cpus.empty()) {
      workers->count = static_cast<std::uint32_t>(workers->cpus.size());
    }
    if (workers->cpus.size() != workers->count) {
      return Error(ErrorCode::kInvalidParameter,
                   "workers.cpus: {} CPUs listed for workers.count {}; give one CPU per worker",
                   workers->cpus.size(), workers->count);
    }
    if (workers->count > kMaxWorkers) {
      return Error(ErrorCode::kInvalidParameter, "workers.cpus: more than {} workers", kMaxWorkers);
    }
  }
  return reader.CheckNoUnknownKeys();
}

// The address after `addr` in its family's number space; the caller never steps past the
// family's last address.
IpAddress Successor(const IpAddress& addr) {
  if (addr.is_v4()) {
    return IpAddress::V4(addr.v4() + 1);
  }
  std::array<std::uint8_t, 16> bytes = addr.bytes();  // network order: carry from the end
  for (std::size_t i = bytes.size(); i-- > 0;) {
    if (++bytes[i] != 0) {
      break;
    }
  }
  return IpAddress::V6(bytes);
}

// One entry of local_addresses: "198.18.1.2", "198.18.1.2-198.18.1.5", "2001:db8:1::2" or
// "2001:db8:1::2-2001:db8:1::5". Both families count towards one per-port limit.
Status ExpandLocalAddresses(const json& entry, const std::string& path,
                            std::vector<IpAddress>* out) {
  if (!entry.is_string()) {
    return Error(ErrorCode::kInvalidParameter,
                 "{}: expected an IPv4 or IPv6 address or range string, got {}", path,
                 Quoted(entry));
  }
  std::string text = entry.get<std::string>();
  std::size_t dash = text.find('-');
  Result<IpAddress> first = IpAddress::Parse(text.substr(0, dash));
  Result<IpAddress> last =
      dash == std::string::npos ? first : IpAddress::Parse(text.substr(dash + 1));
  if (!first.ok() || !last.ok()) {
    return Error(ErrorCode::kInvalidParameter,
                 "{}: {} is not an IPv4 or IPv6 address or range (A or A-B)", path, Quoted(entry));
  }
  if (first->family() != last->family()) {
    return Error(ErrorCode::kInvalidParameter, "{}: range {} mixes IPv4 and IPv6", path,
                 Quoted(entry));
  }
  if (*last < *first) {  // same family: the byte order is the numeric order
    return Error(ErrorCode::kInvalidParameter, "{}: range {} ends before it starts", path,
                 Quoted(entry));
  }
  // Stepping one address at a time stays bounded: the limit stops it after 256 steps.
  for (IpAddress addr = *first;; addr = Successor(addr)) {
    if (out->size() >= kMaxLocalAddressesPerPort) {
      return Error(ErrorCode::kInvalidParameter, "{}: more than {} local addresses on one port",
                   path, kMaxLocalAddressesPerPort);
    }
    out->push_back(addr);
    if (addr == *last) {
      break;
    }
  }
  return Status::Ok();
}

std::string SubnetText(const Prefix& prefix) {
  return fmt::format("{}/{}", prefix.Network().ToString(), prefix.length());
}

// The port's own address of `addr`'s family: `address` or `address6` (unset: nullptr).
const Prefix* PortAddressFor(const PortConfig& port, const IpAddress& addr) {
  if (addr.is_v4()) {
    return &port.address;
  }
  return port.address6.has_value() ? &*port.address6 : nullptr;
}

Status ParseLocalAddresses(ObjectReader& reader, const json& value, PortConfig* port) {
  const std::string path = reader.PathOf("local_addresses");
  FULCRUM_RETURN_IF_ERROR(RequireArray(value, path));
  for (std::size_t i = 0; i < value.size(); ++i) {
    std::string entry_path = fmt::format("{}[{}]", path, i);
    std::size_t before = port->local_addresses.size();
    FULCRUM_RETURN_IF_ERROR(ExpandLocalAddresses(value[i], entry_path, &port->local_addresses));
    for (std::size_t j = before; j < port->local_addresses.size(); ++j) {
      const IpAddress& addr = port->local_addresses[j];
      const Prefix* own = PortAddressFor(*port, addr);
      if (own == nullptr) {
        return Error(ErrorCode::kInvalidParameter,
                     "{}: {} is an IPv6 address but {} is not set (an IPv6 local address needs "
                     "the port's IPv6 subnet)",
                     entry_path, addr.ToString(), reader.PathOf("address6"));
      }
      if (!own->Contains(addr)) {
        return Error(ErrorCode::kInvalidParameter, "{}: {} is outside the port's subnet {}",
                     entry_path, addr.ToString(), SubnetText(*own));
      }
      if (addr == own->addr()) {
        return Error(ErrorCode::kInvalidParameter, "{}: {} is the port's own address", entry_path,
                     addr.ToString());
      }
    }
  }
  return Status::Ok();
}

Status ParseDevice(ObjectReader& reader, const std::string& path, PortConfig* port) {
  FULCRUM_RETURN_IF_ERROR(reader.ReadString("pci", &port->pci));
  FULCRUM_RETURN_IF_ERROR(reader.ReadString("vdev", &port->vdev));
  bool has_pci = reader.Find("pci") != nullptr;
  bool has_vdev = reader.Find("vdev") != nullptr;
  if (has_pci == has_vdev) {
    return Error(has_pci ? ErrorCode::kInvalidParameter : ErrorCode::kMissingParameter,
                 "{}: give exactly one of pci and vdev", path);
  }
  return has_pci ? ValidatePci(port->pci, reader.PathOf("pci"))
                 : ValidateVdev(port->vdev, reader.PathOf("vdev"));
}

// An interface address: a host on its subnet. Host bits all zero are refused except on
// point-to-point lengths (/31, /32 and /127, /128), where every address is a host.
Result<Prefix> ParseHostPrefix(const json& value, const std::string& path, Families family) {
  Result<Prefix> address = ParsePrefix(value, path, family);
  FULCRUM_RETURN_IF_ERROR(address.status());
  const int width = static_cast<int>(address->addr().size()) * 8;
  if (address->length() == 0 ||
      (address->length() <= width - 2 && address->addr() == address->Network())) {
    return Error(ErrorCode::kInvalidParameter,
                 "{}: \"{}\" is not a host address on a subnet (the host bits are zero)", path,
                 address->ToString());
  }
  return address;
}

Status ParseAddresses(ObjectReader& reader, PortConfig* port) {
  FULCRUM_RETURN_IF_ERROR(reader.RequirePresent("address"));
  Result<Prefix> address =
      ParseHostPrefix(*reader.Find("address"), reader.PathOf("address"), Families::kIpv4);
  FULCRUM_RETURN_IF_ERROR(address.status());
  port->address = *address;
  if (const json* value = reader.Find("address6"); value != nullptr) {
    Result<Prefix> address6 = ParseHostPrefix(*value, reader.PathOf("address6"), Families::kIpv6);
    FULCRUM_RETURN_IF_ERROR(address6.status());
    port->address6 = *address6;
  }
  return Status::Ok();
}

// `key` ("gateway" or "gateway6"): a neighbour on the port's subnet of `family`.
Status ParseGateway(ObjectReader& reader, std::string_view key, Families family, PortConfig* port,
                    std::optional<IpAddress>* out) {
  const json* value = reader.Find(key);
  if (value == nullptr) {
    return Status::Ok();
  }
  std::string path = reader.PathOf(key);
  Result<IpAddress> gateway = ParseIp(*value, path, family);
  FULCRUM_RETURN_IF_ERROR(gateway.status());
  const Prefix* own = PortAddressFor(*port, *gateway);
  if (own == nullptr) {
    return Error(ErrorCode::kInvalidParameter, "{}: {} needs {} (the port has no IPv6 subnet)",
                 path, gateway->ToString(), reader.PathOf("address6"));
  }
  if (!own->Contains(*gateway) || *gateway == own->addr()) {
    return Error(ErrorCode::kInvalidParameter, "{}: {} is not a neighbour on the port's subnet {}",
                 path, gateway->ToString(), SubnetText(*own));
  }
  *out = *gateway;
  return Status::Ok();
}

Status ParsePort(const json& value, const std::string& path, PortConfig* port) {
  FULCRUM_RETURN_IF_ERROR(RequireObject(value, path));
  ObjectReader reader(value, path);
  FULCRUM_RETURN_IF_ERROR(reader.RequirePresent("name"));
  FULCRUM_RETURN_IF_ERROR(reader.ReadString("name", &port->name));
  if (!IsName(port->name, 32)) {
    return Error(ErrorCode::kInvalidParameter,
                 "{}: \"{}\" must be 1..32 letters, digits, '_', '-' or '.'", reader.PathOf("name"),
                 port->name);
  }
  FULCRUM_RETURN_IF_ERROR(ParseDevice(reader, path, port));
  FULCRUM_RETURN_IF_ERROR(ParseAddresses(reader, port));
  if (const json* locals = reader.Find("local_addresses"); locals != nullptr) {
    FULCRUM_RETURN_IF_ERROR(ParseLocalAddresses(reader, *locals, port));
  }
  FULCRUM_RETURN_IF_ERROR(ParseGateway(reader, "gateway", Families::kIpv4, port, &port->gateway));
  FULCRUM_RETURN_IF_ERROR(ParseGateway(reader, "gateway6", Families::kIpv6, port, &port->gateway6));
  FULCRUM_RETURN_IF_ERROR(reader.ReadUint("mtu", 68, 9600, &port->mtu));
  FULCRUM_RETURN_IF_ERROR(reader.ReadUint("rx_descriptors", 64, 16384, &port->rx_descriptors));
  FULCRUM_RETURN_IF_ERROR(reader.ReadUint("tx_descriptors", 64, 16384, &port->tx_descriptors));
  return reader.CheckNoUnknownKeys();
}

bool Overlap(const Prefix& a, const Prefix& b) {
  return a.Contains(b.Network()) || b.Contains(a.Network());
}

// Two ports' subnets of one family must be disjoint; `key` is "address" or "address6".
Status CheckSubnetsDisjoint(std::size_t i, std::string_view key, const Prefix* subnet,
                            const PortConfig& other, const Prefix* other_subnet) {
  if (subnet == nullptr || other_subnet == nullptr || !Overlap(*subnet, *other_subnet)) {
    return Status::Ok();
  }
  return Error(ErrorCode::kInvalidParameter, "ports[{}].{}: subnet {} overlaps port \"{}\" ({})", i,
               key, SubnetText(*subnet), other.name, other_subnet->ToString());
}

const Prefix* OptionalPrefix(const std::optional<Prefix>& prefix) {
  return prefix.has_value() ? &*prefix : nullptr;
}

// Cross-port rules: unique names and devices, disjoint subnets, no address used twice.
Status ValidatePorts(const std::vector<PortConfig>& ports) {
  std::map<IpAddress, std::string> owners;  // address -> "ports[i]..." path that claimed it
  for (std::size_t i = 0; i < ports.size(); ++i) {
    const PortConfig& port = ports[i];
    for (std::size_t j = 0; j < i; ++j) {
      const PortConfig& other = ports[j];
      if (port.name == other.name) {
        return Error(ErrorCode::kInvalidParameter, "ports[{}].name: \"{}\" is already ports[{}]", i,
                     port.name, j);
      }
      if (port.DeviceName() == other.DeviceName()) {
        return Error(ErrorCode::kInvalidParameter,
                     "ports[{}]: device \"{}\" is already used by port \"{}\"", i,
                     port.DeviceName(), other.name);
      }
      FULCRUM_RETURN_IF_ERROR(
          CheckSubnetsDisjoint(i, "address", &port.address, other, &other.address));
      FULCRUM_RETURN_IF_ERROR(CheckSubnetsDisjoint(i, "address6", OptionalPrefix(port.address6),
                                                   other, OptionalPrefix(other.address6)));
    }
    std::vector<std::pair<IpAddress, std::string>> claims = {
        {port.address.addr(), fmt::format("ports[{}].address", i)}};
    if (port.address6.has_value()) {
      claims.emplace_back(port.address6->addr(), fmt::format("ports[{}].address6", i));
    }
    for (const IpAddress& addr : port.local_addresses) {
      claims.emplace_back(addr, fmt::format("ports[{}].local_addresses", i));
    }
    for (const auto& [addr, claim_path] : claims) {
      auto [it, inserted] = owners.emplace(addr, claim_path);
      if (!inserted) {
        return Error(ErrorCode::kInvalidParameter, "{}: {} is already used by {}", claim_path,
                     addr.ToString(), it->second);
      }
    }
  }
  return Status::Ok();
}

Status ParsePorts(const json& value, std::vector<PortConfig>* ports) {
  FULCRUM_RETURN_IF_ERROR(RequireArray(value, "ports"));
  if (value.empty() || value.size() > kMaxPorts) {
    return Error(ErrorCode::kInvalidParameter, "ports: give 1..{} ports, got {}", kMaxPorts,
                 value.size());
  }
  for (std::size_t i = 0; i < value.size(); ++i) {
    PortConfig port;
    FULCRUM_RETURN_IF_ERROR(ParsePort(value[i], fmt::format("ports[{}]", i), &port));
    ports->push_back(std::move(port));
  }
  return ValidatePorts(*ports);
}

// The port that reaches `route->via` as a neighbour on its subnet of via's family: the named
// port, or when no port is named, the first port whose subnet holds via.
Status ResolveRoutePort(ObjectReader& reader, const std::vector<PortConfig>& ports,
                        RouteConfig* route) {
  for (const PortConfig& port : ports) {
    bool named = route->port.empty() || route->port == port.name;
    const Prefix* own = PortAddressFor(port, route->via);
    if (named && own != nullptr && own->Contains(route->via) && route->via != own->addr()) {
      route->port = port.name;
      return Status::Ok();
    }
  }
  if (!route->port.empty() && std::none_of(ports.begin(), ports.end(), [&](const PortConfig& port) {
        return port.name == route->port;
      })) {
    return Error(ErrorCode::kInvalidParameter, "{}: no port is named \"{}\"", reader.PathOf("port"),
                 route->port);
  }
  std::string where = !route->port.empty() ? "port \"" + route->port + "\""
                      : route->via.is_v4() ? "any port's subnet"
                                           : "any port's address6 subnet";
  return Error(ErrorCode::kInvalidParameter, "{}: next hop {} is not a neighbour on {}",
               reader.PathOf("via"), route->via.ToString(), where);
}

Status ParseRoute(const json& value, const std::string& path, const std::vector<PortConfig>& ports,
                  RouteConfig* route) {
  FULCRUM_RETURN_IF_ERROR(RequireObject(value, path));
  ObjectReader reader(value, path);
  FULCRUM_RETURN_IF_ERROR(reader.RequirePresent("prefix"));
  Result<Prefix> prefix =
      ParsePrefix(*reader.Find("prefix"), reader.PathOf("prefix"), Families::kBoth);
  FULCRUM_RETURN_IF_ERROR(prefix.status());
  if (prefix->addr() != prefix->Network()) {
    return Error(ErrorCode::kInvalidParameter, "{}: \"{}\" has host bits set (did you mean {}?)",
                 reader.PathOf("prefix"), prefix->ToString(), SubnetText(*prefix));
  }
  route->prefix = *prefix;
  FULCRUM_RETURN_IF_ERROR(reader.RequirePresent("via"));
  Result<IpAddress> via = ParseIp(*reader.Find("via"), reader.PathOf("via"), Families::kBoth);
  FULCRUM_RETURN_IF_ERROR(via.status());
  if (via->family() != prefix->addr().family()) {
    return Error(ErrorCode::kInvalidParameter,
                 "{}: next hop {} is not of the same address family as the prefix {}",
                 reader.PathOf("via"), via->ToString(), prefix->ToString());
  }
  route->via = *via;
  FULCRUM_RETURN_IF_ERROR(reader.ReadString("port", &route->port));
  FULCRUM_RETURN_IF_ERROR(reader.CheckNoUnknownKeys());
  return ResolveRoutePort(reader, ports, route);
}

Status ParseRoutes(const json& value, const std::vector<PortConfig>& ports,
                   std::vector<RouteConfig>* routes) {
  FULCRUM_RETURN_IF_ERROR(RequireArray(value, "routes"));
  if (value.size() > kMaxRoutes) {
    return Error(ErrorCode::kInvalidParameter, "routes: more than {} routes", kMaxRoutes);
  }
  for (std::size_t i = 0; i < value.size(); ++i) {
    RouteConfig route;
    std::string path = fmt::format("routes[{}]", i);
    FULCRUM_RETURN_IF_ERROR(ParseRoute(value[i], path, ports, &route));
    for (std::size_t j = 0; j < routes->size(); ++j) {
      if ((*routes)[j].prefix == route.prefix) {
        return Error(ErrorCode::kInvalidParameter, "{}.prefix: {} is already routes[{}]", path,
                     route.prefix.ToString(), j);
      }
    }
    routes->push_back(std::move(route));
  }
  return Status::Ok();
}

Status ParseConnTable(const json& value, ConnTableConfig* conn_table) {
  FULCRUM_RETURN_IF_ERROR(RequireObject(value, "conn_table"));
  ObjectReader reader(value, "conn_table");
  FULCRUM_RETURN_IF_ERROR(
      reader.ReadUint("capacity_per_worker", 1024, 1u << 27, &conn_table->capacity_per_worker));
  if (reader.Find("ipv6_capacity_per_worker") != nullptr) {
    std::uint32_t ipv6 = 0;
    FULCRUM_RETURN_IF_ERROR(reader.ReadUint("ipv6_capacity_per_worker", 1024, 1u << 26, &ipv6));
    conn_table->ipv6_capacity_per_worker = ipv6;
  }
  FULCRUM_RETURN_IF_ERROR(
      reader.ReadUint("persistence_capacity", 1024, 1u << 28, &conn_table->persistence_capacity));
  return reader.CheckNoUnknownKeys();
}

Status ParseTcpTimeouts(const json& value, TcpTimeouts* timeouts) {
  FULCRUM_RETURN_IF_ERROR(RequireObject(value, "tcp_timeouts"));
  ObjectReader reader(value, "tcp_timeouts");
  FULCRUM_RETURN_IF_ERROR(reader.ReadUint("syn", 1, 3600, &timeouts->syn));
  FULCRUM_RETURN_IF_ERROR(reader.ReadUint("fin", 1, 3600, &timeouts->fin));
  FULCRUM_RETURN_IF_ERROR(reader.ReadUint("time_wait", 1, 3600, &timeouts->time_wait));
  FULCRUM_RETURN_IF_ERROR(reader.ReadUint("close", 1, 3600, &timeouts->close));
  return reader.CheckNoUnknownKeys();
}

Status ParseMbufs(ObjectReader& reader, DaemonConfig* config) {
  std::uint32_t needed = 0;
  for (const PortConfig& port : config->ports) {
    needed = std::max(needed, MinMbufsPerPort(port, config->workers.count));
  }
  const json* value = reader.Find("mbufs_per_port");
  if (value == nullptr) {
    config->mbufs_per_port = std::max<std::uint32_t>(8191, 2 * needed);
    return Status::Ok();
  }
  return ObjectReader::ParseUint(*value, "mbufs_per_port", needed, 1u << 24,
                                 &config->mbufs_per_port);
}

Status ParseLogLevel(ObjectReader& reader, LogLevel* level) {
  std::string name = "info";
  FULCRUM_RETURN_IF_ERROR(reader.ReadString("log_level", &name));
  std::optional<LogLevel> parsed = LogLevelFromName(name);
  if (!parsed.has_value()) {
    return Error(ErrorCode::kInvalidParameter,
                 "log_level: \"{}\" is not one of debug, info, warning, error", name);
  }
  *level = *parsed;
  return Status::Ok();
}

// Sections that need no other section, in file order of docs/config.md.
Status ParseIndependentSections(ObjectReader& reader, DaemonConfig* config) {
  FULCRUM_RETURN_IF_ERROR(ParseAbsolutePath(reader, "socket", kMaxUnixSocketPath, &config->socket));
  FULCRUM_RETURN_IF_ERROR(ParseAbsolutePath(reader, "state_file", 4095, &config->state_file));
  FULCRUM_RETURN_IF_ERROR(ParseLogLevel(reader, &config->log_level));
  FULCRUM_RETURN_IF_ERROR(reader.ReadBool("busy_poll", &config->busy_poll));
  if (const json* eal = reader.Find("eal"); eal != nullptr) {
    FULCRUM_RETURN_IF_ERROR(ParseEal(*eal, &config->eal));
  }
  if (config->eal.no_huge && config->eal.memory_mb == 0) {
    config->eal.memory_mb = 512;
  }
  if (const json* workers = reader.Find("workers"); workers != nullptr) {
    FULCRUM_RETURN_IF_ERROR(ParseWorkers(*workers, &config->workers));
  }
  if (const json* conn_table = reader.Find("conn_table"); conn_table != nullptr) {
    FULCRUM_RETURN_IF_ERROR(ParseConnTable(*conn_table, &config->conn_table));
  }
  if (const json* timeouts = reader.Find("tcp_timeouts"); timeouts != nullptr) {
    FULCRUM_RETURN_IF_ERROR(ParseTcpTimeouts(*timeouts, &config->tcp_timeouts));
  }
  return Status::Ok();
}

}  // namespace

std::string PortConfig::DeviceName() const {
  return std::string(DeviceNameOf(is_pci() ? pci : vdev));
}

std::uint32_t MinMbufsPerPort(const PortConfig& port, std::uint32_t workers) {
  // Full rx and tx rings on every queue, plus each lcore's mempool cache and one burst in
  // flight per worker, plus slack for the control thread (ARP replies, probes).
  constexpr std::uint32_t kPerWorkerSlack = 256 + 64;
  constexpr std::uint32_t kControlSlack = 512;
  return (port.rx_descriptors + port.tx_descriptors + kPerWorkerSlack) * workers + kControlSlack;
}

const PortConfig* DaemonConfig::FindPort(std::string_view name) const {
  for (const PortConfig& port : ports) {
    if (port.name == name) {
      return &port;
    }
  }
  return nullptr;
}

Result<DaemonConfig> DaemonConfig::Parse(std::string_view json_text) {
  json root;
  DomParserKeepingError parser(root);
  bool parsed = json::sax_parse(json_text, &parser, json::input_format_t::json,
                                /*strict=*/true, /*ignore_comments=*/false);
  if (!parsed || root.is_discarded()) {
    return Error(ErrorCode::kInvalidParameter, "config: {}",
                 parser.error().empty() ? "not valid JSON" : parser.error());
  }
  FULCRUM_RETURN_IF_ERROR(RequireObject(root, ""));
  ObjectReader reader(root, "");
  DaemonConfig config;
  FULCRUM_RETURN_IF_ERROR(ParseIndependentSections(reader, &config));
  FULCRUM_RETURN_IF_ERROR(reader.RequirePresent("ports"));
  FULCRUM_RETURN_IF_ERROR(ParsePorts(*reader.Find("ports"), &config.ports));
  // DPDK's AF_XDP PMD registers its UMEM from the first memory chunk of the mbuf pool; without
  // hugepages the pool spans chunks it does not cover, and buffers outside them are lost (on
  // the test bed, a bulk flow stalls once the pool has drained).
  for (std::size_t i = 0; i < config.ports.size(); ++i) {
    if (config.eal.no_huge && config.ports[i].DeviceName().starts_with("net_af_xdp")) {
      return Error(ErrorCode::kNotSupported,
                   "ports[{}]: net_af_xdp needs hugepages: eal.no_huge is not supported with it",
                   i);
    }
  }
  if (const json* routes = reader.Find("routes"); routes != nullptr) {
    FULCRUM_RETURN_IF_ERROR(ParseRoutes(*routes, config.ports, &config.routes));
  }
  FULCRUM_RETURN_IF_ERROR(ParseMbufs(reader, &config));
  FULCRUM_RETURN_IF_ERROR(reader.CheckNoUnknownKeys());
  return config;
}

Result<DaemonConfig> DaemonConfig::Load(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  if (!file) {
    return Error(ErrorCode::kIoError, "config file {}: cannot be opened", path);
  }
  std::string text;
  text.resize(kMaxConfigBytes + 1);
  file.read(text.data(), static_cast<std::streamsize>(text.size()));
  if (file.bad()) {
    return Error(ErrorCode::kIoError, "config file {}: read failed", path);
  }
  text.resize(static_cast<std::size_t>(file.gcount()));
  if (text.size() > kMaxConfigBytes) {
    return Error(ErrorCode::kInvalidParameter, "config file {}: larger than {} bytes", path,
                 kMaxConfigBytes);
  }
  Result<DaemonConfig> config = Parse(text);
  if (!config.ok()) {
    return Status(config.status().code(),
                  fmt::format("config file {}: {}", path, config.status().message()));
  }
  return config;
}

}  // namespace fulcrum
