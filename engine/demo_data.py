"""Build the embedded demo dataset (``resources/demo/dataset.jsonl``) from small fact tables.

The demo dataset lets a new user train the tiny demo model without downloading anything.
Records are Alpaca-style (``instruction``, ``input``, ``output``) with two tag fields,
``task`` and ``lang``, so the data editor and the eval split can filter by them.

Every record is templated from the hand-written tables below, so the content is checkable
and the file is reproducible: the only randomness is one ``random.Random(1234)``, and the
tables are iterated in a fixed order. Running ``python -m engine.demo_data`` twice gives a
byte-identical file; a test holds the shipped file to a fresh build.

Outputs are kept short (mostly one sentence) because the demo model is tiny.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence
from datetime import date
from pathlib import Path

from engine.files import atomic_write_text

SEED = 1234
TASKS = ("qa", "generation", "classification", "rewriting", "extraction", "summarization")
LANGS = ("en", "zh")
SENTIMENT_LABELS = {"en": ("positive", "negative", "neutral"), "zh": ("正面", "负面", "中性")}

# How many records of each task per language. English is ~55% of the total, and no task
# type goes above ~30%, so a tiny model sees every task often enough to learn its format.
_COUNTS = {
    "en": {"qa_country": 24, "qa_science": 30, "gen_product": 20, "gen_message": 10,
           "extraction": 26, "sum_town": 12},
    "zh": {"qa_country": 22, "qa_science": 24, "gen_product": 16, "gen_message": 8,
           "extraction": 22, "sum_town": 8},
}

Record = dict[str, str]

# ---- Fact tables ------------------------------------------------------------------------

# (English name, Chinese name, capital, capital in Chinese, continent, continent in Chinese).
# The English name carries its article ("the Netherlands") so it reads right mid-sentence.
COUNTRIES: tuple[tuple[str, str, str, str, str, str], ...] = (
    ("France", "法国", "Paris", "巴黎", "Europe", "欧洲"),
    ("Germany", "德国", "Berlin", "柏林", "Europe", "欧洲"),
    ("Italy", "意大利", "Rome", "罗马", "Europe", "欧洲"),
    ("Spain", "西班牙", "Madrid", "马德里", "Europe", "欧洲"),
    ("Portugal", "葡萄牙", "Lisbon", "里斯本", "Europe", "欧洲"),
    ("the United Kingdom", "英国", "London", "伦敦", "Europe", "欧洲"),
    ("Ireland", "爱尔兰", "Dublin", "都柏林", "Europe", "欧洲"),
    ("the Netherlands", "荷兰", "Amsterdam", "阿姆斯特丹", "Europe", "欧洲"),
    ("Belgium", "比利时", "Brussels", "布鲁塞尔", "Europe", "欧洲"),
    ("Sweden", "瑞典", "Stockholm", "斯德哥尔摩", "Europe", "欧洲"),
    ("Norway", "挪威", "Oslo", "奥斯陆", "Europe", "欧洲"),
    ("Finland", "芬兰", "Helsinki", "赫尔辛基", "Europe", "欧洲"),
    ("Poland", "波兰", "Warsaw", "华沙", "Europe", "欧洲"),
    ("Greece", "希腊", "Athens", "雅典", "Europe", "欧洲"),
    ("Austria", "奥地利", "Vienna", "维也纳", "Europe", "欧洲"),
    ("Japan", "日本", "Tokyo", "东京", "Asia", "亚洲"),
    ("China", "中国", "Beijing", "北京", "Asia", "亚洲"),
    ("South Korea", "韩国", "Seoul", "首尔", "Asia", "亚洲"),
    ("India", "印度", "New Delhi", "新德里", "Asia", "亚洲"),
    ("Thailand", "泰国", "Bangkok", "曼谷", "Asia", "亚洲"),
    ("Vietnam", "越南", "Hanoi", "河内", "Asia", "亚洲"),
    ("the Philippines", "菲律宾", "Manila", "马尼拉", "Asia", "亚洲"),
    ("Mongolia", "蒙古", "Ulaanbaatar", "乌兰巴托", "Asia", "亚洲"),
    ("Nepal", "尼泊尔", "Kathmandu", "加德满都", "Asia", "亚洲"),
    ("Egypt", "埃及", "Cairo", "开罗", "Africa", "非洲"),
    ("Kenya", "肯尼亚", "Nairobi", "内罗毕", "Africa", "非洲"),
    ("Nigeria", "尼日利亚", "Abuja", "阿布贾", "Africa", "非洲"),
    ("Ethiopia", "埃塞俄比亚", "Addis Ababa", "亚的斯亚贝巴", "Africa", "非洲"),
    ("Morocco", "摩洛哥", "Rabat", "拉巴特", "Africa", "非洲"),
    ("Ghana", "加纳", "Accra", "阿克拉", "Africa", "非洲"),
    ("Canada", "加拿大", "Ottawa", "渥太华", "North America", "北美洲"),
    ("the United States", "美国", "Washington, D.C.", "华盛顿", "North America", "北美洲"),
    ("Mexico", "墨西哥", "Mexico City", "墨西哥城", "North America", "北美洲"),
    ("Cuba", "古巴", "Havana", "哈瓦那", "North America", "北美洲"),
    ("Brazil", "巴西", "Brasília", "巴西利亚", "South America", "南美洲"),
    ("Argentina", "阿根廷", "Buenos Aires", "布宜诺斯艾利斯", "South America", "南美洲"),
    ("Peru", "秘鲁", "Lima", "利马", "South America", "南美洲"),
    ("Chile", "智利", "Santiago", "圣地亚哥", "South America", "南美洲"),
    ("Colombia", "哥伦比亚", "Bogotá", "波哥大", "South America", "南美洲"),
    ("Australia", "澳大利亚", "Canberra", "堪培拉", "Oceania", "大洋洲"),
    ("New Zealand", "新西兰", "Wellington", "惠灵顿", "Oceania", "大洋洲"),
)

# (question, answer, question in Chinese, answer in Chinese).
SCIENCE_FACTS: tuple[tuple[str, str, str, str], ...] = (
    ("At what temperature does water boil at sea level?", "Water boils at 100 °C (212 °F) at sea level.",
     "在海平面，水的沸点是多少摄氏度？", "在海平面，水的沸点是100摄氏度。"),
    ("At what temperature does water freeze?", "Water freezes at 0 °C (32 °F).",
     "水在多少摄氏度时结冰？", "水在0摄氏度时结冰。"),
    ("How many meters are in a kilometer?", "There are 1,000 meters in a kilometer.",
     "1千米等于多少米？", "1千米等于1000米。"),
    ("How many centimeters are in a meter?", "There are 100 centimeters in a meter.",
     "1米等于多少厘米？", "1米等于100厘米。"),
    ("How many grams are in a kilogram?", "There are 1,000 grams in a kilogram.",
     "1千克等于多少克？", "1千克等于1000克。"),
    ("How many seconds are in an hour?", "There are 3,600 seconds in an hour.",
     "1小时有多少秒？", "1小时有3600秒。"),
    ("How many minutes are in a day?", "There are 1,440 minutes in a day.",
     "一天有多少分钟？", "一天有1440分钟。"),
    ("How many inches are in a foot?", "There are 12 inches in a foot.",
     "1英尺等于多少英寸？", "1英尺等于12英寸。"),
    ("How many kilometers are in a mile?", "One mile is about 1.609 kilometers.",
     "1英里约等于多少千米？", "1英里约等于1.609千米。"),
    ("What is the chemical symbol for gold?", "The chemical symbol for gold is Au.",
     "金的化学符号是什么？", "金的化学符号是Au。"),
    ("What is the chemical symbol for sodium?", "The chemical symbol for sodium is Na.",
     "钠的化学符号是什么？", "钠的化学符号是Na。"),
    ("What is the chemical formula for water?", "The chemical formula for water is H2O.",
     "水的化学式是什么？", "水的化学式是H2O。"),
    ("What is the atomic number of carbon?", "The atomic number of carbon is 6.",
     "碳的原子序数是多少？", "碳的原子序数是6。"),
    ("What is the largest planet in the solar system?", "Jupiter is the largest planet in the solar system.",
     "太阳系中最大的行星是哪一颗？", "太阳系中最大的行星是木星。"),
    ("Which planet is closest to the Sun?", "Mercury is the planet closest to the Sun.",
     "离太阳最近的行星是哪一颗？", "离太阳最近的行星是水星。"),
    ("Which planet is known as the Red Planet?", "Mars is known as the Red Planet.",
     "哪颗行星被称为“红色星球”？", "火星被称为“红色星球”。"),
    ("Which gas do plants absorb for photosynthesis?", "Plants absorb carbon dioxide for photosynthesis.",
     "植物进行光合作用时吸收哪种气体？", "植物进行光合作用时吸收二氧化碳。"),
    ("What is the most abundant gas in Earth's atmosphere?",
     "Nitrogen is the most abundant gas, making up about 78% of Earth's atmosphere.",
     "地球大气中含量最多的气体是什么？", "地球大气中含量最多的气体是氮气，约占78%。"),
    ("What is the speed of light in a vacuum?",
     "Light travels at about 300,000 kilometers per second in a vacuum.",
     "光在真空中的速度大约是多少？", "光在真空中的速度约为每秒30万千米。"),
    ("What is the SI unit of force?", "The SI unit of force is the newton (N).",
     "力的国际单位是什么？", "力的国际单位是牛顿（N）。"),
    ("What is the SI unit of electric current?", "The SI unit of electric current is the ampere (A).",
     "电流的国际单位是什么？", "电流的国际单位是安培（A）。"),
    ("What is the SI unit of energy?", "The SI unit of energy is the joule (J).",
     "能量的国际单位是什么？", "能量的国际单位是焦耳（J）。"),
    ("What is the SI unit of power?", "The SI unit of power is the watt (W).",
     "功率的国际单位是什么？", "功率的国际单位是瓦特（W）。"),
    ("How many bones are in the adult human body?", "An adult human body has 206 bones.",
     "成年人全身有多少块骨头？", "成年人全身有206块骨头。"),
    ("Which organ pumps blood through the human body?", "The heart pumps blood through the body.",
     "人体中负责泵血的器官是什么？", "人体中负责泵血的器官是心脏。"),
    ("How long does it take Earth to orbit the Sun?", "Earth takes about 365.25 days to orbit the Sun.",
     "地球绕太阳公转一周大约需要多长时间？", "地球绕太阳公转一周大约需要365.25天。"),
    ("What is the hardest natural substance?", "Diamond is the hardest natural substance.",
     "自然界中最坚硬的物质是什么？", "自然界中最坚硬的物质是金刚石（钻石）。"),
    ("What is the pH of pure water at 25 °C?", "Pure water has a pH of 7 at 25 °C, which is neutral.",
     "25摄氏度时纯水的pH值是多少？", "25摄氏度时纯水的pH值是7，呈中性。"),
    ("What is the largest ocean on Earth?", "The Pacific Ocean is the largest ocean on Earth.",
     "地球上最大的海洋是哪个？", "地球上最大的海洋是太平洋。"),
    ("What is the sum of the interior angles of a triangle?",
     "The interior angles of a triangle add up to 180 degrees.",
     "三角形的内角和是多少度？", "三角形的内角和是180度。"),
)

# (name, material, key feature, best for) in English, then the same four in Chinese.
# Features are third-person singular verb phrases so they follow "it" directly.
PRODUCTS: tuple[tuple[str, str, str, str, str, str, str, str], ...] = (
    ("water bottle", "stainless steel", "keeps drinks cold for 24 hours", "hiking and daily commutes",
     "保温水杯", "不锈钢", "可让饮品保冷24小时", "徒步和日常通勤"),
    ("backpack", "recycled nylon", "has a padded sleeve for a 15-inch laptop", "school and business trips",
     "双肩背包", "再生尼龙", "配有可放15英寸笔记本电脑的加厚内袋", "上学和出差"),
    ("desk lamp", "aluminum", "offers three brightness levels", "reading and late-night work",
     "台灯", "铝合金", "提供三档亮度", "阅读和夜间工作"),
    ("wireless mouse", "matte plastic", "runs for months on one AA battery", "office work and travel",
     "无线鼠标", "磨砂塑料", "一节五号电池可用数月", "办公和出行"),
    ("yoga mat", "natural rubber", "has a non-slip surface", "home workouts and studio classes",
     "瑜伽垫", "天然橡胶", "表面防滑", "居家锻炼和瑜伽课"),
    ("coffee mug", "ceramic", "is safe for the microwave and dishwasher", "morning coffee and tea",
     "咖啡杯", "陶瓷", "可放入微波炉和洗碗机", "早晨的咖啡和茶"),
    ("umbrella", "fiberglass", "folds small enough to fit in a handbag", "rainy commutes",
     "折叠雨伞", "玻璃纤维", "折叠后可放进手提包", "雨天通勤"),
    ("notebook", "recycled paper", "lies flat when open", "journaling and class notes",
     "笔记本", "再生纸", "打开后可完全平铺", "写日记和记课堂笔记"),
    ("running jacket", "lightweight polyester", "packs into its own pocket", "runs in windy weather",
     "跑步夹克", "轻质涤纶", "可收纳进自带的口袋", "大风天跑步"),
    ("Bluetooth speaker", "waterproof fabric", "plays music for 12 hours on one charge",
     "picnics and beach days",
     "蓝牙音箱", "防水织物", "充一次电可播放12小时音乐", "野餐和海滩出游"),
    ("lunch box", "glass", "has a leak-proof lid", "packed lunches",
     "饭盒", "玻璃", "盖子密封防漏", "自带午餐"),
    ("phone stand", "bamboo", "adjusts to three viewing angles", "video calls and following recipes",
     "手机支架", "竹子", "可调节三个观看角度", "视频通话和看菜谱"),
)

COLORS: tuple[tuple[str, str], ...] = (
    ("black", "黑色"), ("white", "白色"), ("navy blue", "藏青色"),
    ("forest green", "墨绿色"), ("gray", "灰色"), ("red", "红色"),
)

WEEKDAYS: tuple[tuple[str, str], ...] = (
    ("Monday", "周一"), ("Tuesday", "周二"), ("Wednesday", "周三"), ("Thursday", "周四"), ("Friday", "周五"),
)

MONTHS_EN = ("January", "February", "March", "April", "May", "June", "July", "August", "September",
             "October", "November", "December")

# (full name, e-mail local part).
PEOPLE_EN: tuple[tuple[str, str], ...] = (
    ("Alice Chen", "alice.chen"), ("Brian Lee", "brian.lee"), ("Carmen Diaz", "carmen.diaz"),
    ("Daniel Kim", "daniel.kim"), ("Emma Wilson", "emma.wilson"), ("Farah Khan", "farah.khan"),
    ("George Miller", "george.miller"), ("Hannah Park", "hannah.park"), ("Ivan Petrov", "ivan.petrov"),
    ("Julia Rossi", "julia.rossi"),
)
PEOPLE_ZH: tuple[tuple[str, str], ...] = (
    ("张伟", "zhang.wei"), ("王芳", "wang.fang"), ("李娜", "li.na"), ("刘洋", "liu.yang"),
    ("陈静", "chen.jing"), ("杨帆", "yang.fan"), ("赵磊", "zhao.lei"), ("黄敏", "huang.min"),
    ("周婷", "zhou.ting"), ("吴昊", "wu.hao"),
)
# example.com/.org are reserved for documentation (RFC 2606), so no real inbox is named.
EMAIL_DOMAINS = ("example.com", "example.org")
TOPICS: tuple[tuple[str, str], ...] = (
    ("budget", "预算"), ("product launch", "新品发布"), ("hiring plan", "招聘计划"),
    ("website redesign", "网站改版"), ("quarterly report", "季度报告"), ("office move", "办公室搬迁"),
)
PRICES_EN = ("8.99", "12.50", "19.99", "24.95", "34.00", "45.75", "59.99", "79.90", "129.00")
PRICES_ZH = (39, 59, 88, 129, 199, 258, 299, 399)

EVENTS_EN = ("team meeting", "project review", "interview", "book club session")
EVENTS_ZH = ("周会", "项目评审", "面试", "读书会")
FIRST_NAMES_EN = ("Anna", "David", "Maria", "James", "Lucy", "Tom")
NAMES_ZH = ("李明", "张经理", "陈老师", "王芳")

SENTIMENT_EN: dict[str, tuple[str, ...]] = {
    "positive": (
        "Absolutely love this blender. It crushes ice in seconds.",
        "The hotel staff were friendly and the room was spotless.",
        "Great value for the price. I would buy it again.",
        "The delivery arrived a day early and everything was perfect.",
        "This book kept me hooked until the very last page.",
        "Comfortable shoes, and they fit exactly as described.",
        "The customer service team solved my problem in five minutes.",
        "Best pizza in town. The crust is amazing.",
        "The app is fast, simple, and does exactly what I need.",
        "My kids adore this game and play it every weekend.",
        "Battery life is excellent; it easily lasts two days.",
        "The concert was unforgettable. The band sounded incredible.",
    ),
    "negative": (
        "The screen cracked after one week of normal use.",
        "Terrible service. We waited an hour for cold food.",
        "The package arrived damaged and half the parts were missing.",
        "This jacket is not waterproof at all. Total waste of money.",
        "The app crashes every time I try to log in.",
        "The room smelled of smoke and the air conditioning didn't work.",
        "Customer support never answered my emails.",
        "The headphones stopped charging after two days.",
        "Way too salty, and the portions were tiny.",
        "The instructions were confusing and the assembly took hours.",
        "I returned it. The color looks nothing like the photos.",
        "The movie was boring and far too long.",
    ),
    "neutral": (
        "The package arrived on Tuesday.",
        "The shirt is available in blue and gray.",
        "It does what the description says, nothing more and nothing less.",
        "The restaurant is open from 9 a.m. to 10 p.m.",
        "I received the order. I haven't tried it yet.",
        "The box contains a charger, a cable, and a manual.",
        "The hotel is about ten minutes from the train station.",
        "It's an average phone case. Not great, not bad.",
        "The book has 320 pages and twelve chapters.",
        "The product weighs about two kilograms.",
        "Delivery took the standard five business days.",
        "The lamp uses a regular E27 bulb.",
    ),
}
SENTIMENT_ZH: dict[str, tuple[str, ...]] = {
    "正面": (
        "这款耳机音质很好，戴着也舒服。",
        "快递第二天就到了，包装很用心。",
        "客服态度非常好，很快就帮我解决了问题。",
        "这家餐厅的菜很好吃，下次还会再来。",
        "性价比很高，推荐给大家。",
        "孩子特别喜欢这本绘本，每天都要看。",
        "酒店房间干净整洁，服务很周到。",
        "电池很耐用，充一次能用两天。",
        "衣服质量不错，尺码也很标准。",
        "这部电影太精彩了，值得一看。",
    ),
    "负面": (
        "用了一周屏幕就裂了，质量太差。",
        "等了一个小时才上菜，而且菜都凉了。",
        "收到的包裹破损了，还少了零件。",
        "这件外套根本不防水，白花钱了。",
        "软件一登录就闪退，根本没法用。",
        "客服一直不回复，非常失望。",
        "房间有很重的烟味，空调也坏了。",
        "颜色和图片差别太大，已经退货了。",
        "说明书看不懂，组装花了好几个小时。",
        "电影又长又无聊，看得想睡觉。",
    ),
    "中性": (
        "包裹周二送到了。",
        "这件衬衫有蓝色和灰色两种颜色。",
        "餐厅营业时间是早上九点到晚上十点。",
        "已经收到货了，还没开始用。",
        "盒子里有充电器、数据线和说明书。",
        "酒店离火车站大约十分钟路程。",
        "这个手机壳很普通，不算好也不算差。",
        "这本书一共有320页。",
        "产品重量大约两公斤。",
        "快递用了五个工作日送达。",
    ),
}

# Rewriting: style -> (instruction templates, (source, target) pairs).
REWRITES_EN: dict[str, tuple[tuple[str, ...], tuple[tuple[str, str], ...]]] = {
    "casual": (
        ("Rewrite this sentence in a casual, friendly tone.",
         "Make the following sentence sound more relaxed and informal.",
         "Turn this formal sentence into everyday casual language."),
        (
            ("We regret to inform you that the event has been cancelled.",
             "Sorry, but the event's been cancelled."),
            ("Please be advised that the office will be closed on Monday.",
             "Heads up: the office is closed Monday."),
            ("I would be grateful if you could send me the report at your earliest convenience.",
             "Could you send me the report when you get a chance?"),
            ("Kindly confirm your attendance by Friday.", "Let us know by Friday if you're coming."),
            ("We appreciate your patience while we resolve this issue.",
             "Thanks for hanging in there while we fix this."),
            ("The meeting has been postponed until further notice.", "The meeting's on hold for now."),
            ("Should you require any further assistance, do not hesitate to contact us.",
             "Need anything else? Just give us a shout."),
            ("It is with great pleasure that we welcome you to the team.",
             "We're so happy to have you on the team!"),
        ),
    ),
    "formal": (
        ("Rewrite this sentence in a formal tone.",
         "Make the following sentence sound professional.",
         "Rephrase this casual sentence for a business email."),
        (
            ("Hey, can you send me that file?", "Could you please send me the file?"),
            ("Sorry I'm late, traffic was crazy.",
             "I apologize for my late arrival; the traffic was unusually heavy."),
            ("The printer's broken again.", "The printer is out of order again."),
            ("Thanks a ton for your help!", "Thank you very much for your assistance."),
            ("We gotta finish this by Friday.", "We need to complete this by Friday."),
            ("Can't make it to the meeting, sorry.", "Unfortunately, I will be unable to attend the meeting."),
            ("Your order's on its way!", "Your order has been shipped."),
            ("Let me know what you think.", "I would appreciate your feedback."),
        ),
    ),
    "simplify": (
        ("Simplify this sentence so it is easier to read.",
         "Rewrite the sentence below in plain, simple English.",
         "Make this sentence shorter and clearer."),
        (
            ("Due to the fact that it was raining, the game was postponed.",
             "The game was put off because it rained."),
            ("In the event that you have questions, please reach out to our support team.",
             "If you have questions, contact our support team."),
            ("At this point in time, we are not able to offer refunds.", "We can't offer refunds right now."),
            ("The committee reached a decision to implement the new policy in the near future.",
             "The committee decided to start the new policy soon."),
            ("Individuals who wish to participate must register in advance.",
             "People who want to take part must sign up first."),
            ("She made an attempt to utilize the new software.", "She tried to use the new software."),
            ("The majority of the students were in agreement with the proposal.",
             "Most students agreed with the proposal."),
            ("Prior to the commencement of the exam, phones must be switched off.",
             "Turn off your phone before the exam starts."),
        ),
    ),
    "active": (
        ("Rewrite this sentence in the active voice.",
         "Change the following sentence from passive to active voice.",
         "Convert this passive sentence into an active one."),
        (
            ("The cake was baked by my grandmother.", "My grandmother baked the cake."),
            ("The letter was written by Sarah.", "Sarah wrote the letter."),
            ("The window was broken by the storm.", "The storm broke the window."),
            ("The report will be reviewed by the manager tomorrow.",
             "The manager will review the report tomorrow."),
            ("The song was performed by the school choir.", "The school choir performed the song."),
            ("The bridge was designed by a young engineer.", "A young engineer designed the bridge."),
            ("The mistakes were found by the editor.", "The editor found the mistakes."),
            ("The new park is visited by hundreds of families every weekend.",
             "Hundreds of families visit the new park every weekend."),
        ),
    ),
}
REWRITES_ZH: dict[str, tuple[tuple[str, ...], tuple[tuple[str, str], ...]]] = {
    "casual": (
        ("请把下面的句子改写成轻松的口语表达。", "把这句话改得随意、口语化一些。"),
        (
            ("烦请您于本周五之前提交报告。", "周五前把报告交一下哈。"),
            ("我们非常遗憾地通知您，本次活动已取消。", "不好意思，这次活动取消啦。"),
            ("如有任何疑问，请随时与我们联系。", "有啥问题随时找我们就行。"),
            ("会议将推迟至另行通知。", "会先不开了，具体时间等通知。"),
            ("感谢您在此期间的耐心等待。", "谢谢你耐心等了这么久！"),
            ("欢迎您加入我们的团队。", "欢迎加入，很高兴和你一起干！"),
        ),
    ),
    "formal": (
        ("请把下面的句子改写得更正式。", "将这句口语改写成适合工作邮件的正式表达。"),
        (
            ("那个文件发我一下呗。", "请将该文件发送给我。"),
            ("不好意思来晚了，路上堵死了。", "抱歉迟到，路上交通十分拥堵。"),
            ("打印机又坏了。", "打印机再次出现故障。"),
            ("太谢谢你帮忙了！", "非常感谢您的帮助。"),
            ("这活儿周五前得干完。", "这项工作需要在周五前完成。"),
            ("会我去不了了，抱歉。", "很抱歉，我无法出席本次会议。"),
        ),
    ),
    "simplify": (
        ("请把下面的句子改写得更简洁易懂。", "精简这句话，去掉多余的词。"),
        (
            ("由于天气原因的影响，比赛不得不被推迟举行。", "因为天气原因，比赛推迟了。"),
            ("在您有任何问题的情况下，请您联系我们的客服团队。", "有问题请联系客服。"),
            ("目前在这个时间点上，我们暂时无法为您提供退款服务。", "我们目前无法退款。"),
            ("大多数的学生对于这个提议都表示了同意。", "大多数学生同意这个提议。"),
            ("她进行了一次使用新软件的尝试。", "她试着用了新软件。"),
            ("在考试开始之前，所有手机都必须要处于关机的状态。", "考试前必须关机。"),
        ),
    ),
    "active": (
        ("请把下面的被动句改写成主动句。", "将这句话从被动语态改为主动语态。"),
        (
            ("蛋糕被奶奶烤好了。", "奶奶烤好了蛋糕。"),
            ("这封信被小王寄出去了。", "小王把这封信寄出去了。"),
            ("窗户被暴风雨打破了。", "暴风雨打破了窗户。"),
            ("报告明天会被经理审阅。", "经理明天会审阅报告。"),
            ("错误被编辑发现了。", "编辑发现了错误。"),
            ("花瓶被小猫打碎了。", "小猫打碎了花瓶。"),
        ),
    ),
}

# Hand-written passages with their one-sentence summaries.
PASSAGES_EN: tuple[tuple[str, str], ...] = (
    ("Honeybees pollinate many of the crops that people eat, including apples, almonds and blueberries. "
     "In recent years, beekeepers in several countries have reported large colony losses. "
     "Scientists link these losses to parasites, pesticides and poor nutrition.",
     "Honeybees pollinate many food crops, but colonies are declining because of parasites, "
     "pesticides and poor nutrition."),
    ("Adults generally need seven to nine hours of sleep per night. "
     "Regularly sleeping less than that is linked to poorer memory, weaker immunity and a higher risk "
     "of some diseases. Keeping a consistent bedtime is one of the simplest ways to sleep better.",
     "Adults need seven to nine hours of sleep, too little harms health, and a regular bedtime helps."),
    ("The Great Wall of China was built and rebuilt over many centuries. "
     "Most of the sections that survive today date from the Ming dynasty. "
     "The wall was meant to protect against raids from the north.",
     "Built over centuries to guard against northern raids, most of the surviving Great Wall dates "
     "from the Ming dynasty."),
    ("Recycling aluminum uses about 95 percent less energy than producing it from raw ore. "
     "Aluminum can be recycled again and again without losing quality. "
     "That makes cans one of the most valuable items in a recycling bin.",
     "Aluminum cans are valuable to recycle because recycling saves about 95 percent of the energy "
     "and never lowers quality."),
    ("Many companies expanded remote work during the COVID-19 pandemic. "
     "Some employees found they saved hours each week on commuting. "
     "Others missed face-to-face contact with colleagues and found it harder to separate work from home life.",
     "Remote work grew during the pandemic, saving commuting time but reducing contact and blurring "
     "work-life boundaries."),
    ("Octopuses have three hearts and blue blood. "
     "Two hearts pump blood to the gills, while the third pumps it to the rest of the body. "
     "Their blood is blue because it uses a copper-based protein called hemocyanin to carry oxygen.",
     "Octopuses have three hearts and blue, copper-based blood."),
    ("Electric cars produce no tailpipe emissions. "
     "Their overall climate impact depends on how the electricity that charges them is generated. "
     "As power grids add more solar and wind, the benefit of driving electric grows.",
     "Electric cars have no tailpipe emissions, and their climate benefit grows as grids get cleaner."),
    ("Regular exercise strengthens the heart and muscles. "
     "It can also improve mood and help people sleep. "
     "Health agencies often recommend at least 150 minutes of moderate activity per week for adults.",
     "Exercise benefits the body, mood and sleep, and adults should aim for 150 minutes a week."),
    ("Plants make their own food through photosynthesis. "
     "Using sunlight, they turn water and carbon dioxide into sugar and release oxygen. "
     "Photosynthesis by plants and algae produces most of the oxygen in the atmosphere.",
     "Through photosynthesis, plants turn sunlight, water and carbon dioxide into sugar and oxygen."),
    ("Reusing the same password on many websites is risky. "
     "If one site is breached, attackers can try that password everywhere else. "
     "A password manager makes it easy to use a unique, strong password for every account.",
     "Reusing passwords is risky, so use a password manager to keep a unique password for each account."),
    ("Coffee plants grow best in tropical regions near the equator. "
     "The beans are actually the seeds of a red fruit often called a cherry. "
     "After harvest, the seeds are dried, roasted and ground before brewing.",
     "Coffee beans are the seeds of a tropical fruit that are dried, roasted and ground before brewing."),
    ("Ocean tides are caused mainly by the Moon's gravity pulling on Earth's water. "
     "The Sun also has an effect, but it is smaller. "
     "When the Sun and Moon line up, tides are higher than usual; these are called spring tides.",
     "Tides come mainly from the Moon's gravity, and they are strongest when the Sun and Moon line up."),
)
PASSAGES_ZH: tuple[tuple[str, str], ...] = (
    ("大熊猫主要生活在中国四川、陕西和甘肃的山区。它们的食物绝大部分是竹子，每天要花很长时间进食。"
     "经过多年的保护，大熊猫的野外数量已有所回升。",
     "大熊猫生活在中国西部山区、以竹子为食，经过保护野外数量有所回升。"),
    ("成年人通常每晚需要七到九小时的睡眠。长期睡眠不足与记忆力下降、免疫力减弱有关。"
     "保持固定的作息时间是改善睡眠最简单的方法之一。",
     "成年人每晚需要七到九小时睡眠，睡眠不足有害健康，规律作息有助改善。"),
    ("长江是中国最长的河流，全长约6300公里。它发源于青藏高原，最终流入东海。"
     "长江流域是中国重要的农业和经济地区。",
     "长江全长约6300公里，是中国最长的河流，其流域是重要的农业和经济区。"),
    ("垃圾分类可以让可回收物得到再次利用。它还能减少需要填埋和焚烧的垃圾量。"
     "许多城市已经开始推行垃圾分类制度。",
     "垃圾分类能回收资源、减少垃圾处理量，许多城市已在推行。"),
    ("茶起源于中国，已有数千年的饮用历史。根据加工方式不同，茶可分为绿茶、红茶、乌龙茶等。"
     "如今，茶已成为世界上最受欢迎的饮品之一。",
     "茶起源于中国，种类多样，如今是世界上最受欢迎的饮品之一。"),
    ("适量运动能增强心肺功能。它还能改善情绪、帮助睡眠。"
     "专家建议成年人每周至少进行150分钟中等强度的运动。",
     "运动有益身心，成年人每周应至少进行150分钟中等强度运动。"),
    ("在多个网站使用同一个密码存在风险。一旦某个网站泄露，攻击者就可能用这个密码登录你的其他账户。"
     "使用密码管理器可以方便地为每个账户设置独立的强密码。",
     "重复使用密码有风险，应借助密码管理器为每个账户设置独立密码。"),
    ("植物通过光合作用制造养分。它们利用阳光，把水和二氧化碳转化为糖，同时释放氧气。"
     "大气中的大部分氧气都来自植物和藻类的光合作用。",
     "植物通过光合作用把水和二氧化碳转化为糖并释放氧气。"),
    ("海洋潮汐主要由月球引力引起。太阳也有影响，但作用较小。"
     "当太阳和月球位于一条直线上时，潮水比平时更高，这被称为大潮。",
     "潮汐主要由月球引力造成，日月成一线时会形成大潮。"),
    ("电动汽车行驶时没有尾气排放。它对气候的总体影响取决于充电用电的来源。"
     "随着电网中太阳能和风能的比例提高，电动汽车的环保优势会越来越大。",
     "电动汽车没有尾气排放，电网越清洁，它的环保优势越大。"),
)

# Town news, for templated summaries: the towns are fictional so no real place gets a made-up story.
TOWNS_EN = ("Maple Falls", "Riverton", "Cedar Grove", "Lakeside", "Oakridge", "Pine Hollow")
TOWNS_ZH = ("青山镇", "临河市", "松林县", "白石镇", "清水市", "枫林镇")
# (facility, detail, benefit) in English, then in Chinese.
FACILITIES: tuple[tuple[str, str, str, str, str, str], ...] = (
    ("public library", "has room for 80,000 books", "give students a quiet place to study",
     "图书馆", "可容纳8万册图书", "为学生提供安静的学习场所"),
    ("bike path", "runs 12 kilometers along the river", "reduce car traffic in the town center",
     "自行车道", "沿河全长12公里", "减少市中心的汽车流量"),
    ("community pool", "has eight lanes", "let local schools offer swimming lessons",
     "游泳馆", "设有八条泳道", "让当地学校能够开设游泳课"),
    ("solar farm", "can power about 3,000 homes", "lower the town's electricity costs",
     "太阳能电站", "可为约3000户家庭供电", "降低当地的用电成本"),
    ("bus station", "serves eleven routes", "make commuting easier",
     "公交枢纽", "连接11条公交线路", "让通勤更加便利"),
    ("health clinic", "has twenty exam rooms", "shorten waiting times for patients",
     "社区医院", "设有20间诊室", "缩短患者的等候时间"),
)
COSTS_EN = ("2", "3.5", "4", "6", "8", "12")
COSTS_ZH = ("800", "1200", "2500", "3500", "5000", "8000")

# ---- Instruction templates --------------------------------------------------------------

QA_WRAPPERS_EN = ("Answer the question in one sentence.", "Answer briefly.", "Please answer this question.")
QA_WRAPPERS_ZH = ("请用一句话回答下面的问题。", "简要回答下面的问题。", "请回答这个问题。")
CLASSIFY_EN = (
    "Classify the sentiment of the review as positive, negative, or neutral.",
    "What is the sentiment of this customer review? Answer with one word: positive, negative, or neutral.",
    "Label the following review as positive, negative, or neutral.",
    "Read the review and say whether it is positive, negative, or neutral.",
)
CLASSIFY_ZH = (
    "判断下面这条评论的情感倾向，只回答：正面、负面或中性。",
    "这条用户评论的情感是正面、负面还是中性？",
    "请将以下评论分类为正面、负面或中性。",
    "阅读评论，给出情感标签（正面/负面/中性）。",
)
SUMMARIZE_EN = (
    "Summarize the following passage in one sentence.",
    "Give a one-sentence summary of this text.",
    "Write a brief summary of the passage below.",
    "What is the main point of this paragraph? Answer in one sentence.",
)
SUMMARIZE_ZH = (
    "用一句话概括下面这段文字。",
    "请为以下短文写一句简短的摘要。",
    "总结这段话的主要内容。",
    "这段文字的要点是什么？请用一句话回答。",
)
PRODUCT_EN = (
    "Write a short product description from the details below.",
    "Write a one- or two-sentence description for an online store listing.",
    "Using these attributes, write a brief, appealing product description.",
)
PRODUCT_ZH = (
    "根据下面的信息，写一段简短的商品描述。",
    "为电商页面写一两句商品介绍。",
    "请用这些属性写一段简洁、有吸引力的产品文案。",
)


def _record(instruction: str, input_text: str, output: str, task: str, lang: str) -> Record:
    # Key order is part of the file format: the data editor shows columns in this order.
    return {"instruction": instruction, "input": input_text, "output": output, "task": task, "lang": lang}


def _sentence_case(text: str) -> str:
    return text[:1].upper() + text[1:]


def _json(value: object) -> str:
    return json.dumps(value, ensure_ascii=False)


def _random_date(rng: random.Random) -> date:
    # Day <= 28 is valid in every month, so no date arithmetic can fail.
    return date(rng.choice((2024, 2025)), rng.randint(1, 12), rng.randint(1, 28))


def _date_en(d: date) -> str:
    # Month names from a table, not strftime, so the output does not depend on the locale.
    return f"{MONTHS_EN[d.month - 1]} {d.day}, {d.year}"


def _date_zh(d: date) -> str:
    return f"{d.year}年{d.month}月{d.day}日"


def _unique(rng: random.Random, count: int, make: Callable[[random.Random], Record]) -> list[Record]:
    """Call ``make`` until ``count`` records with distinct instruction+input exist."""
    out: list[Record] = []
    seen: set[tuple[str, str]] = set()
    attempts = 0
    while len(out) < count:
        attempts += 1
        if attempts > count * 50:
            raise RuntimeError(f"demo data: could only make {len(out)} of {count} distinct records")
        rec = make(rng)
        key = (rec["instruction"], rec["input"])
        if key not in seen:
            seen.add(key)
            out.append(rec)
    return out


# ---- QA -----------------------------------------------------------------------------------


def _qa_country(rng: random.Random, lang: str, count: int) -> list[Record]:
    records = []
    for c_en, c_zh, cap_en, cap_zh, cont_en, cont_zh in rng.sample(COUNTRIES, count):
        kind = rng.choice(("capital", "capital", "reverse", "continent", "both"))
        if lang == "en":
            question, answer = {
                "capital": (f"What is the capital of {c_en}?", f"The capital of {c_en} is {cap_en}."),
                "reverse": (f"{cap_en} is the capital of which country?", f"{cap_en} is the capital of {c_en}."),
                "continent": (f"Which continent is {c_en} in?", f"{_sentence_case(c_en)} is in {cont_en}."),
                "both": (f"Name the capital of {c_en} and the continent it is on.",
                         f"{_sentence_case(c_en)} is in {cont_en}, and its capital is {cap_en}."),
            }[kind]
            wrappers = QA_WRAPPERS_EN
        else:
            question, answer = {
                "capital": (f"{c_zh}的首都是哪里？", f"{c_zh}的首都是{cap_zh}。"),
                "reverse": (f"{cap_zh}是哪个国家的首都？", f"{cap_zh}是{c_zh}的首都。"),
                "continent": (f"{c_zh}位于哪个大洲？", f"{c_zh}位于{cont_zh}。"),
                "both": (f"说出{c_zh}的首都和它所在的大洲。", f"{c_zh}的首都是{cap_zh}，位于{cont_zh}。"),
            }[kind]
            wrappers = QA_WRAPPERS_ZH
        records.append(_qa_record(rng, question, answer, wrappers, lang))
    return records


def _qa_science(rng: random.Random, lang: str, count: int) -> list[Record]:
    records = []
    for q_en, a_en, q_zh, a_zh in rng.sample(SCIENCE_FACTS, count):
        if lang == "en":
            records.append(_qa_record(rng, q_en, a_en, QA_WRAPPERS_EN, lang))
        else:
            records.append(_qa_record(rng, q_zh, a_zh, QA_WRAPPERS_ZH, lang))
    return records


def _qa_record(rng: random.Random, question: str, answer: str, wrappers: Sequence[str], lang: str) -> Record:
    # Half the questions stand alone as the instruction; the rest sit in `input` under a
    # generic instruction, so the model learns both layouts.
    if rng.random() < 0.5:
        return _record(question, "", answer, "qa", lang)
    return _record(rng.choice(wrappers), question, answer, "qa", lang)


# ---- Generation ---------------------------------------------------------------------------


def _product_description(rng: random.Random, lang: str) -> Record:
    p = rng.choice(PRODUCTS)
    color_en, color_zh = rng.choice(COLORS)
    if lang == "en":
        name, material, feature, use = p[0], p[1], p[2], p[3]
        details = (f"Product: {name}\nColor: {color_en}\nMaterial: {material}\n"
                   f"Key feature: {feature}\nBest for: {use}")
        output = rng.choice((
            f"Meet the {color_en} {name}: made of {material}, it {feature}. Ideal for {use}.",
            f"This {color_en} {name} is made of {material} and {feature}. "
            f"It is a great choice for {use}.",
            f"Made of {material}, this {color_en} {name} {feature}, perfect for {use}.",
        ))
        return _record(rng.choice(PRODUCT_EN), details, output, "generation", lang)
    name, material, feature, use = p[4], p[5], p[6], p[7]
    details = f"产品：{name}\n颜色：{color_zh}\n材质：{material}\n特点：{feature}\n适用：{use}"
    output = rng.choice((
        f"这款{color_zh}{name}采用{material}制成，{feature}，非常适合{use}。",
        f"{color_zh}{name}，{material}材质，{feature}，是{use}的理想选择。",
    ))
    return _record(rng.choice(PRODUCT_ZH), details, output, "generation", lang)


def _reschedule_message(rng: random.Random, lang: str) -> Record:
    d1, d2 = rng.sample(WEEKDAYS, 2)
    if lang == "en":
        name, event = rng.choice(FIRST_NAMES_EN), rng.choice(EVENTS_EN)
        output = (f"Hi {name}, would it be possible to move the {event} from {d1[0]} to {d2[0]}? "
                  "Sorry for the short notice, and thank you for your flexibility.")
        if rng.random() < 0.5:
            instruction = (f"Write a short, polite message to {name} asking to move the {event} "
                           f"from {d1[0]} to {d2[0]}.")
            return _record(instruction, "", output, "generation", lang)
        details = f"To: {name}\nEvent: {event}\nMove from: {d1[0]}\nMove to: {d2[0]}"
        return _record("Write a short, polite rescheduling message using these details.", details,
                       output, "generation", lang)
    name, event = rng.choice(NAMES_ZH), rng.choice(EVENTS_ZH)
    output = f"{name}您好，请问能否把{event}从{d1[1]}改到{d2[1]}？临时调整给您添麻烦了，感谢理解！"
    if rng.random() < 0.5:
        instruction = f"给{name}写一条简短、礼貌的消息，请求把{event}从{d1[1]}改到{d2[1]}。"
        return _record(instruction, "", output, "generation", lang)
    details = f"收件人：{name}\n事项：{event}\n原定：{d1[1]}\n改到：{d2[1]}"
    return _record("根据以下信息，写一条礼貌的改期消息。", details, output, "generation", lang)


# ---- Classification -----------------------------------------------------------------------


def _classification(rng: random.Random, lang: str) -> list[Record]:
    table = SENTIMENT_EN if lang == "en" else SENTIMENT_ZH
    templates = CLASSIFY_EN if lang == "en" else CLASSIFY_ZH
    records = []
    for label, reviews in table.items():
        for review in reviews:
            records.append(_record(rng.choice(templates), review, label, "classification", lang))
    return records


# ---- Rewriting ----------------------------------------------------------------------------


def _rewriting(rng: random.Random, lang: str) -> list[Record]:
    table = REWRITES_EN if lang == "en" else REWRITES_ZH
    records = []
    for templates, pairs in table.values():
        for source, target in pairs:
            records.append(_record(rng.choice(templates), source, target, "rewriting", lang))
    return records


# ---- Extraction ---------------------------------------------------------------------------


def _email(local: str, rng: random.Random) -> str:
    return f"{local}@{rng.choice(EMAIL_DOMAINS)}"


def _extraction_en(rng: random.Random) -> Record:
    kind = rng.choice(("purchase", "contact", "meeting", "emails", "prices"))
    if kind == "purchase":
        (name, _), item, price, d = rng.choice(PEOPLE_EN), rng.choice(PRODUCTS)[0], rng.choice(PRICES_EN), \
            _random_date(rng)
        text = f"{name} bought a {item} for ${price} on {_date_en(d)}."
        instruction = rng.choice((
            "Extract the buyer's name, the item, the price, and the date from the sentence. "
            "Return JSON with keys name, item, price, date (date as YYYY-MM-DD).",
            "Pull out the name, item, price and date as JSON (keys: name, item, price, date; "
            "date in YYYY-MM-DD).",
        ))
        return _record(instruction, text, _json({"name": name, "item": item, "price": float(price),
                                                 "date": d.isoformat()}), "extraction", "en")
    if kind == "contact":
        name, local = rng.choice(PEOPLE_EN)
        email, topic, d = _email(local, rng), rng.choice(TOPICS)[0], _random_date(rng)
        text = f"For questions about the {topic}, email {name} at {email} before {_date_en(d)}."
        instruction = ("Extract the contact name, email address, and deadline from the text as JSON "
                       "with keys name, email, deadline (YYYY-MM-DD).")
        return _record(instruction, text, _json({"name": name, "email": email, "deadline": d.isoformat()}),
                       "extraction", "en")
    if kind == "meeting":
        (n1, _), (n2, _) = rng.sample(PEOPLE_EN, 2)
        topic, d = rng.choice(TOPICS)[0], _random_date(rng)
        text = f"{n1} and {n2} will meet on {_date_en(d)} to discuss the {topic}."
        instruction = rng.choice((
            "Extract the people, the date, and the topic from the sentence. Return JSON with keys "
            "people (a list), date (YYYY-MM-DD), and topic.",
            "Who is meeting, when, and about what? Answer as JSON with keys people, date, topic.",
        ))
        return _record(instruction, text, _json({"people": [n1, n2], "date": d.isoformat(), "topic": topic}),
                       "extraction", "en")
    if kind == "emails":
        (_, l1), (_, l2) = rng.sample(PEOPLE_EN, 2)
        e1, e2 = _email(l1, rng), _email(l2, rng)
        text = rng.choice((f"Send the draft to {e1} and copy {e2}.",
                           f"Questions go to {e1}; invoices go to {e2}."))
        return _record("List every email address in the text as a JSON array.", text, _json([e1, e2]),
                       "extraction", "en")
    (i1, *_), (i2, *_) = rng.sample(PRODUCTS, 2)
    p1, p2 = rng.sample(PRICES_EN, 2)
    text = f"The {i1} costs ${p1}, and the {i2} costs ${p2}."
    return _record("Extract each product and its price as a JSON object that maps product to price.", text,
                   _json({i1: float(p1), i2: float(p2)}), "extraction", "en")


def _extraction_zh(rng: random.Random) -> Record:
    kind = rng.choice(("purchase", "contact", "meeting", "emails", "prices"))
    if kind == "purchase":
        (name, _), item, price, d = rng.choice(PEOPLE_ZH), rng.choice(PRODUCTS)[4], rng.choice(PRICES_ZH), \
            _random_date(rng)
        text = f"{name}于{_date_zh(d)}以{price}元的价格购买了{item}。"
        instruction = rng.choice((
            "从句子中提取购买人、商品、价格和日期，以JSON输出，键为name、item、price、date，日期格式为YYYY-MM-DD。",
            "请提取姓名、商品、价格和日期，输出JSON（键：name、item、price、date；日期用YYYY-MM-DD）。",
        ))
        return _record(instruction, text, _json({"name": name, "item": item, "price": price,
                                                 "date": d.isoformat()}), "extraction", "zh")
    if kind == "contact":
        name, local = rng.choice(PEOPLE_ZH)
        email, topic, d = _email(local, rng), rng.choice(TOPICS)[1], _random_date(rng)
        text = f"如对{topic}有疑问，请在{_date_zh(d)}前发邮件给{name}，邮箱是{email}。"
        instruction = "提取联系人姓名、邮箱和截止日期，以JSON输出，键为name、email、deadline（YYYY-MM-DD）。"
        return _record(instruction, text, _json({"name": name, "email": email, "deadline": d.isoformat()}),
                       "extraction", "zh")
    if kind == "meeting":
        (n1, _), (n2, _) = rng.sample(PEOPLE_ZH, 2)
        topic, d = rng.choice(TOPICS)[1], _random_date(rng)
        text = f"{n1}和{n2}将于{_date_zh(d)}开会讨论{topic}。"
        instruction = "提取参会人员、日期和议题，以JSON输出，键为people（列表）、date（YYYY-MM-DD）、topic。"
        return _record(instruction, text, _json({"people": [n1, n2], "date": d.isoformat(), "topic": topic}),
                       "extraction", "zh")
    if kind == "emails":
        (_, l1), (_, l2) = rng.sample(PEOPLE_ZH, 2)
        e1, e2 = _email(l1, rng), _email(l2, rng)
        text = rng.choice((f"请把初稿发到{e1}，并抄送{e2}。", f"咨询请联系{e1}，发票请发送至{e2}。"))
        return _record("找出文本中所有的邮箱地址，以JSON数组输出。", text, _json([e1, e2]), "extraction", "zh")
    p_a, p_b = rng.sample(PRODUCTS, 2)
    i1, i2 = p_a[4], p_b[4]
    p1, p2 = rng.sample(PRICES_ZH, 2)
    text = f"{i1}售价{p1}元，{i2}售价{p2}元。"
    return _record("提取每件商品及其价格，输出一个从商品名映射到价格的JSON对象。", text,
                   _json({i1: p1, i2: p2}), "extraction", "zh")


# ---- Summarization ------------------------------------------------------------------------


def _town_news(rng: random.Random, lang: str) -> Record:
    fac = rng.choice(FACILITIES)
    day_en, day_zh = rng.choice(WEEKDAYS)
    if lang == "en":
        town, cost = rng.choice(TOWNS_EN), rng.choice(COSTS_EN)
        facility, detail, benefit = fac[0], fac[1], fac[2]
        passage = (f"{town} opened a new {facility} on {day_en}. The {facility} {detail}, and it cost "
                   f"${cost} million to build. Local officials say it will {benefit}.")
        summary = f"{town} opened a new {facility} that {detail}, which officials say will {benefit}."
        return _record(rng.choice(SUMMARIZE_EN), passage, summary, "summarization", lang)
    town, cost = rng.choice(TOWNS_ZH), rng.choice(COSTS_ZH)
    facility, detail, benefit = fac[3], fac[4], fac[5]
    passage = f"{town}于{day_zh}启用了一座新的{facility}。该{facility}{detail}，总投资{cost}万元。当地官员表示，它将{benefit}。"
    summary = f"{town}启用了新的{facility}，{detail}，预计将{benefit}。"
    return _record(rng.choice(SUMMARIZE_ZH), passage, summary, "summarization", lang)


def _summarization(rng: random.Random, lang: str, town_count: int) -> list[Record]:
    passages = PASSAGES_EN if lang == "en" else PASSAGES_ZH
    templates = SUMMARIZE_EN if lang == "en" else SUMMARIZE_ZH
    records = [_record(rng.choice(templates), p, s, "summarization", lang) for p, s in passages]
    records += _unique(rng, town_count, lambda r: _town_news(r, lang))
    return records


# ---- Public API ---------------------------------------------------------------------------


def build_records() -> list[dict[str, str]]:
    """Build the demo dataset's records, in the order they are written to disk.

    Returns:
        Alpaca-style dicts with keys ``instruction``, ``input``, ``output``, ``task`` and
        ``lang``, shuffled with a fixed seed so that any split of the file mixes tasks and
        languages. The same list comes back on every call.
    """
    rng = random.Random(SEED)
    records: list[Record] = []
    for lang in LANGS:
        n = _COUNTS[lang]
        records += _qa_country(rng, lang, n["qa_country"])
        records += _qa_science(rng, lang, n["qa_science"])
        records += _unique(rng, n["gen_product"], lambda r, lang=lang: _product_description(r, lang))
        records += _unique(rng, n["gen_message"], lambda r, lang=lang: _reschedule_message(r, lang))
        records += _classification(rng, lang)
        records += _rewriting(rng, lang)
        extract = _extraction_en if lang == "en" else _extraction_zh
        records += _unique(rng, n["extraction"], extract)
        records += _summarization(rng, lang, n["sum_town"])
    rng.shuffle(records)
    return records


def to_jsonl(records: Sequence[dict[str, str]]) -> str:
    """Serialise records as JSON lines: UTF-8 text, one object per line, a trailing newline."""
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)


def write_dataset(path: Path) -> Path:
    """Build the demo dataset and write it atomically to ``path``.

    Args:
        path: Destination ``.jsonl`` file; parent folders are created.

    Returns:
        The path written.
    """
    return atomic_write_text(Path(path), to_jsonl(build_records()))


if __name__ == "__main__":
    from engine.paths import demo_dataset_path

    written = write_dataset(demo_dataset_path())
    print(f"wrote {len(build_records())} records to {written}")
